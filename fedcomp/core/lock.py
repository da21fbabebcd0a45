"""One writer per run directory: an advisory lock held for a run's whole lifetime.

Two runs aimed at the same directory would overwrite each other's files, and the first
would then print the second's numbers as its own. :func:`lock_run_dir` takes an
exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` without waiting: a second run fails at
once with :class:`RunDirInUse`, naming the directory and the process holding it. The
kernel drops the lock when its holder exits, however it exits (a crash or ``kill -9``
included), so a stale lock file never blocks a later run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fedcomp.core.errors import ConfigError

LOCK_FILE = ".lock"


class RunDirInUse(ConfigError):
    """Another live process holds the run directory's lock (commands exit 2 on it)."""


@contextlib.contextmanager
def lock_run_dir(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if needed) while the block runs.

    Raises
    ------
    RunDirInUse
        When another process holds it; the message names the directory and that
        process's id, and says how to pick another directory.
    """
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, fd) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_locked(run_dir: str | os.PathLike[str]) -> bool:
    """True when a live process holds ``run_dir``'s lock (a run is writing there now)."""
    try:
        refuse_if_locked(run_dir)
    except RunDirInUse:
        return True
    return False


def refuse_if_locked(run_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`RunDirInUse` when a live process holds ``run_dir``'s lock; create nothing."""
    lock = Path(run_dir) / LOCK_FILE
    if not lock.is_file():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(Path(run_dir), fd) from None
    finally:
        os.close(fd)


def _in_use(path: Path, fd: int) -> RunDirInUse:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    return RunDirInUse(
        f"run directory {path} is in use by another run (pid {holder}); "
        "wait for it to finish or choose another hydra.run.dir"
    )
