"""What both benchmarks share: machine information, timing, memory, process-tree CPU.

Nothing here touches fedcomp's internals: the benchmarks time fedcomp's public
functions and read what a run prints and writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import resource
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "results" / "bench"

#: A window of timed calls whose slowest call exceeds its fastest by more than this is
#: measured again (another process probably took the CPU), up to ``WINDOWS`` windows.
SPREAD = 1.3
WINDOWS = 3
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=10, check=False)
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, UTC date, load average, git commit."""
    import flwr
    import ray
    import torch

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "flwr": flwr.__version__,
        "ray": ray.__version__,
        "loadavg_1m_5m_15m": list(os.getloadavg()),
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["mem_total_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        info["git_commit"] = _git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    return info


def header(machine: dict[str, Any]) -> str:
    """One Markdown line describing where and when a result was measured."""
    return (f"{machine['date_utc'][:10]} · {machine['cpu_model']} ({machine['cpu_count']} cores) · "
            f"torch {machine['torch']} ({machine['torch_threads']} threads) · flwr {machine['flwr']} · "
            f"numpy {machine['numpy']} · load {machine['loadavg_1m_5m_15m'][0]:.2f} · "
            f"git {machine.get('git_commit')}")


# ------------------------------------------------------------------ timing
def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def time_calls(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``, with the garbage collector off (as
    ``timeit``: a collection pass costs ~0.4 s with torch loaded)."""
    out = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return out


def timed_window(fn: Callable[[], Any], repeats: int) -> tuple[list[float], float, int]:
    """Times of ``repeats`` calls, minor page faults per call, windows taken.

    When a window's slowest call exceeds its fastest by more than :data:`SPREAD` (and
    calls take over 1 ms) it is measured again, up to :data:`WINDOWS` times; the window
    with the lowest median is kept. Page faults are first touches of freshly mapped
    memory: the step in cost between buffers the allocator reuses and fresh ``mmap`` ones.
    """
    best: list[float] = []
    faults = 0.0
    taken = 0
    while taken < WINDOWS:
        taken += 1
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = time_calls(fn, repeats)
        got = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / max(1, repeats)
        if not best or median(times) < median(best):
            best, faults = times, got
        if max(times) <= SPREAD * min(times) or min(times) < 1e-3:
            break
    return best, faults, taken


# ------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes ``fn`` allocates above what was allocated before (``tracemalloc``).

    numpy reports its data buffers to tracemalloc, so this is exact for numpy code
    (temporaries and the returned arrays); torch allocations are invisible to it.
    """
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return int(peak), result


def rss_peak(fn: Callable[[], Any], interval: float = 0.0005) -> tuple[int, Any]:
    """Approximate peak RSS growth while ``fn`` runs (a sampling thread; sees torch too)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS: a floor
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
        peak[0] = max(peak[0], _rss_bytes())
    finally:
        done.set()
        thread.join()
    return int(peak[0] - base), result


# ------------------------------------------------------------------ process trees
def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def process_cpu_s(pid: int | str) -> float:
    """utime + stime of one process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_s() -> float:
    """CPU seconds of this process and its live descendants (Ray's GCS, raylet, workers)."""
    return sum(process_cpu_s(p) for p in descendants(os.getpid()))


def system_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat; steal time included)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _pss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeMemorySampler(threading.Thread):
    """Peak PSS of this process plus all its descendants, sampled every ``interval`` s.

    PSS splits shared pages (Ray's object store, shared libraries) between the processes
    that map them, so the sum over a process tree counts nothing twice.
    """

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self._cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = descendants(os.getpid())
            self.peak = max(self.peak, sum(_pss_bytes(p) for p in pids))
            for pid in pids:
                self._cpu[pid] = max(self._cpu.get(pid, 0.0), process_cpu_s(pid))
            self._stop_event.wait(self.interval)

    @property
    def tree_cpu_s(self) -> float:
        """CPU seconds of the processes of the tree, as last seen (Ray's included)."""
        return sum(self._cpu.values()) if self._cpu else tree_cpu_s()

    def stop(self) -> int:
        """Stop sampling; the peak PSS in bytes."""
        self._stop_event.set()
        self.join()
        return self.peak


def peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ formatting
def fmt(value: Any, spec: str = ".3g", none: str = "–") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


def targets_markdown(targets: list[dict], title: str) -> list[str]:
    """A Markdown table of ``{"target", "value", "threshold", "met", "detail"}`` rows."""
    if not targets:
        return []
    out = [f"**{title}**", "", "| target | value | threshold | met | detail |", "|---|--:|--:|---|---|"]
    for t in targets:
        met = "yes" if t["met"] else "**no**"
        out.append(f"| {t['target']} | {fmt(t['value'], '.3f')} | {t['threshold']} | {met} | {t['detail']} |")
    return out + [""]
