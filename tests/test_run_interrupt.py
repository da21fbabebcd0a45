"""One Ctrl-C or SIGTERM stops a run or a sweep within 5 s: exit 130/143, one line, no process left.

These start real runs as a user would (``python -m fedcomp.run`` in its own process
group) and signal them mid-round: SIGINT to the whole group, as a terminal's Ctrl-C
does (Ray's processes get it too), SIGTERM to the command alone, as a process manager
does.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from fedcomp.core.rundir import SUMMARY_FILE, check_run

SMALL = ["task=digits", "partition=iid", "federation.num_clients=2", "federation.fraction_fit=1.0"]


class Command:
    """``python -m fedcomp.run ARGS`` in a new process group, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedcomp.run", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        """Read lines until one matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        self.proc.kill()
        pytest.fail(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines[-30:]))

    def stop(self, sig: int, group: bool) -> tuple[int, float, list[psutil.Process], list[str]]:
        """Signal it; return exit code, seconds to exit, its descendants then, and the lines after."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        start = time.monotonic()
        os.killpg(self.proc.pid, sig) if group else self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        elapsed = time.monotonic() - start
        rest = []
        while (line := self._queue.get(timeout=10)) is not None:
            rest.append(line)
        return code, elapsed, children, rest


def alive(processes: list[psutil.Process], settle_s: float = 3.0) -> list[str]:
    """The processes of ``processes`` still running ``settle_s`` after the command exited."""
    _, running = psutil.wait_procs(processes, timeout=settle_s)
    return [f"{p.pid} {p.name()}" for p in running if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def check_stopped(result, code: int, name: str, run_dir) -> None:
    exit_code, elapsed, children, rest = result
    assert exit_code == code, rest
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert [line for line in rest if line] == [f"interrupted by {name}: {run_dir} left incomplete (resume redoes it)"]
    assert not alive(children)
    assert not (run_dir / SUMMARY_FILE).exists() and "missing" in check_run(run_dir)
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"])
def test_a_ray_run_stops_at_once(tmp_path, sig, group):
    run_dir = tmp_path / "run"
    cmd = Command(*SMALL, "federation.num_rounds=1000", "engine=simulation", f"hydra.run.dir={run_dir}")
    cmd.wait_for(r"^round +2/1000")
    assert len(psutil.Process(cmd.proc.pid).children(recursive=True)) >= 3  # Ray's processes and actors
    name = signal.Signals(sig).name
    check_stopped(cmd.stop(sig, group), 128 + sig, name, run_dir)


@pytest.mark.slow
def test_a_sweep_stops_at_once_and_resume_redoes_the_stopped_run(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *SMALL, "engine=inprocess", "federation.num_rounds=2", "client.local_epochs=1,10",
            f"hydra.sweep.dir={sweep}"]
    cmd = Command(*args)
    cmd.wait_for(r"^\[2/2\] start: ")
    first, second = sorted(p for p in sweep.iterdir() if p.is_dir())  # client.local_epochs=1,... and =10,...
    check_stopped(cmd.stop(signal.SIGINT, group=True), 130, "SIGINT", second)
    assert check_run(first) is None

    again = subprocess.run([sys.executable, "-m", "fedcomp.run", *args], check=False, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"[1/2] skip: {first} is already complete" in again.stdout
    assert "[2/2] start: " in again.stdout and check_run(second) is None
