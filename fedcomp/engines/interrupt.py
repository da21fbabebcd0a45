"""Stop a run or a sweep on one Ctrl-C (SIGINT) or SIGTERM: one line, no traceback, no process left.

Why Python's default does not work here: Flower's ``run_simulation`` runs the ServerApp
in a non-daemon thread and the Simulation Engine in the main thread. A
``KeyboardInterrupt`` in the main thread stops the engine (and Ray) but not the
ServerApp thread, which waits for replies that never come, so the interpreter cannot
exit until a second Ctrl-C; meanwhile every layer logs the failure with its traceback.
A terminal's Ctrl-C also reaches Ray's processes (one process group), which die on their
own and make the driver print ``ActorDiedError`` tracebacks.

:func:`stop_on_signals` replaces that with one handler, whatever the engine: it says
in one line what stopped (and which run directory is left incomplete), silences the
process's output, stops every descendant process (SIGTERM, then SIGKILL after a grace
period; the whole tree is listed first, so Ray's workers are found even after their
raylet is gone), removes half-written temporary files of the run directory and exits
with ``128 + signal`` (130 for SIGINT, 143 for SIGTERM) via ``os._exit``, so no thread
can keep the process alive. The run directory has no ``summary.json`` (launch removes a
stale one before the run starts), so resume redoes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds between SIGTERM and SIGKILL for the processes left behind.
GRACE_S = 2.0

_current_run: list[Path] = []


def message(signum: int, run_dir: Path | None) -> str:
    """The one line an interrupt prints: which signal, and the run directory left incomplete."""
    where = f": {run_dir} left incomplete (resume redoes it)" if run_dir else ""
    return f"interrupted by {signal.Signals(signum).name}{where}"


def exit_code(signum: int) -> int:
    """The shell's exit code for a process stopped by ``signum`` (130 for SIGINT)."""
    return 128 + int(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Install the stopping handler for SIGINT and SIGTERM meanwhile (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Put the SIGINT and SIGTERM handlers back after the block (a library replaced them).

    ``ray.init`` installs its own SIGTERM handler (``sys.exit``); engines start such
    runtimes inside this block so :func:`stop_on_signals` keeps working.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


@contextlib.contextmanager
def running(run_dir: Path) -> Iterator[None]:
    """Name ``run_dir`` as the run an interrupt leaves incomplete, meanwhile."""
    _current_run.append(run_dir)
    try:
        yield
    finally:
        _current_run.pop()


def stop_descendants(grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every descendant process, SIGKILL those alive after ``grace_s``; return their pids."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)
        _, children = psutil.wait_procs(children, timeout=wait)
        if not children:
            break
    return [child.pid for child in children]


def _stop(signum: int, _frame: FrameType | None) -> None:
    """The signal handler: see the module docstring."""
    code = exit_code(signum)
    signal.signal(signum, lambda *_: os._exit(code))  # a second signal: exit at once
    logging.disable(logging.CRITICAL)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    run_dir = _current_run[-1] if _current_run else None
    os.write(2, f"\n{message(signum, run_dir)}\n".encode())
    _silence_output()
    stop_descendants()
    if run_dir is not None:
        for tmp in run_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    os._exit(code)


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null: threads still running must not print tracebacks."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)
