"""Processes fedcomp starts for Flower: free ports, start, find, stop; signals meanwhile.

Every process is started in its own process group with a unique tag in its environment
(``FEDCOMP_DEPLOY_TAG``), which Flower passes on to the processes it starts itself
(SuperExec, ServerApp, ClientApp, simulation), so :meth:`Processes.stop_all` finds and
stops all of them by PID, also after they left their parent's process group. Only
processes that are ours *now* are ever signalled, never a PID seen earlier that may
have been reused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcomp.core.env import child_environment
from fedcomp.engines.deployment.errors import DeploymentError, Interrupted

#: The environment variable that marks every process of one deployment.
TAG_VAR = "FEDCOMP_DEPLOY_TAG"


# ---------------------------------------------------------------------------- ports


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (someone listens or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that are free right now (the OS picks them).

    All sockets are held open until every port is picked, so no port is handed out
    twice in one call. The one free-port helper of the project.
    """
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` as ``(host, port)``; DeploymentError naming ``engine.superlink_address``."""
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise DeploymentError(f"engine.superlink_address: must be 'host:port', got {address!r}")
    return host, int(port)


# ---------------------------------------------------------------------------- finding processes


def _state(pid: int | str) -> bytes | None:
    """The state letter of a process (``b"Z"`` for a zombie), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    return _state(pid) not in (None, b"Z")


def tagged(tag: str) -> list[int]:
    """PIDs of live processes whose environment carries ``FEDCOMP_DEPLOY_TAG=tag``."""
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in env and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _parent_death_signal() -> Any:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when we die (Linux), or None.

    libc is loaded here, before any fork; the child only makes one C call (no imports,
    no locks), which is what makes a ``preexec_fn`` safe enough with threads around.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ---------------------------------------------------------------------------- starting and stopping


def flower_env(home: Path) -> dict[str, str]:
    """The environment of every Flower process: quiet, offline, ``FLWR_HOME=home``.

    This environment's ``bin`` goes first on ``PATH``: Flower starts ``flower-superexec``,
    ``flwr-serverapp`` and friends by name.
    """
    env = child_environment(FLWR_HOME=str(home))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Started:
    """One process fedcomp started."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen
    critical: bool = True  # its exit before the run ends is a failure

    @property
    def pid(self) -> int:
        return self.popen.pid

    def describe(self) -> dict[str, Any]:
        """Name, PID, argv, exit code (None while running) and log path."""
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": self.argv,
            "exit_code": self.popen.poll(),
            "log": str(self.log_path),
        }


class Processes:
    """Start processes in their own process groups, tagged; stop them all by PID.

    Parameters
    ----------
    env
        The environment every process gets (plus the tag).
    log_dir
        Where ``<name>.log`` (stdout and stderr of each process) goes.
    stop_timeout
        Seconds between SIGTERM and SIGKILL in :meth:`stop_all`.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, stop_timeout: float = 10.0) -> None:
        self.tag = uuid.uuid4().hex
        self.env = {**env, TAG_VAR: self.tag}
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.started: list[Started] = []
        self.seen: set[int] = set()
        self._preexec = _parent_death_signal()

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        critical: bool = True,
    ) -> Started:
        """Start ``argv`` as ``name`` (log ``<log_dir>/<name>.log``); its :class:`Started`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # own process group: pgid == pid
                preexec_fn=self._preexec,  # noqa: PLW1509 - one prctl call, see _parent_death_signal
            )
        proc = Started(name, argv, log_path, popen, critical)
        self.started.append(proc)
        self.seen.add(proc.pid)
        return proc

    def remember_descendants(self) -> None:
        """Note the PIDs of everything started so far (called while polling)."""
        self.seen.update(tagged(self.tag))

    def check_alive(self) -> None:
        """DeploymentError when a critical process exited (with the last lines of its log)."""
        for proc in self.started:
            if proc.critical and proc.popen.poll() is not None:
                raise DeploymentError(
                    f"{proc.name} (pid {proc.pid}) exited with code {proc.popen.returncode} before the run "
                    f"finished; last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
                )

    def _ours(self) -> set[int]:
        """PIDs that are ours now: running direct children and live tagged processes."""
        return {p.pid for p in self.started if p.popen.poll() is None} | set(tagged(self.tag))

    def stop_all(self) -> list[int]:
        """SIGTERM our process groups and tagged processes, then SIGKILL; return survivors."""
        self.remember_descendants()
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            for proc in self.started:
                if proc.popen.poll() is None:  # not reaped: its pid (= pgid) is still ours
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            for pid in tagged(self.tag):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self._ours() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self._ours():
                break
        return sorted(self._ours())


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------- signals


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    """Install ``handler`` for SIGINT/SIGTERM/SIGHUP meanwhile (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def stop_on_signals() -> contextlib.AbstractContextManager[None]:
    """Turn SIGTERM/SIGHUP/SIGINT into :class:`Interrupted` while deploying."""
    return _signals(_raise_interrupted)


def ignore_signals() -> contextlib.AbstractContextManager[None]:
    """Let the clean-up finish: ignore SIGINT/SIGTERM/SIGHUP meanwhile."""
    return _signals(signal.SIG_IGN)
