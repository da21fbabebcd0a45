"""Where a run's log records go: one plain line each on the console, everything in ``run.log``.

Flower logs a failed ClientApp with its full traceback (Ray's, with colour codes) on its
own console handler, and Hydra's default logging prints every record again on stdout;
a run with a few failing clients printed hundreds of lines. During a run,
:func:`run_logging` instead sends

- every record (Flower's and Ray's included, tracebacks too, colour codes removed) to
  ``<run_dir>/run.log``;
- fedcomp's own warnings and errors to the console, one line each
  (``round 3: client 1 failed: InjectedFault: ...``);
- Flower's console output only with ``verbose=true``.

Hydra's job logging is switched off (``hydra/job_logging: none`` in ``conf/config.yaml``)
so this is the one place that configures it, for every engine and for runs started
outside Hydra (tests, tools).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from fedcomp.core.errors import one_line, strip_ansi

LOG_FILE = "run.log"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Loggers whose console handlers are muted unless ``verbose``.
FOREIGN_LOGGERS = ("flwr", "ray")


class PlainFormatter(logging.Formatter):
    """The standard format (traceback included), without ANSI colour codes."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_ansi(super().format(record))


class OneLineFormatter(logging.Formatter):
    """The message reduced to one line (:func:`fedcomp.core.errors.one_line`), no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(record.getMessage(), limit=500)


def console_handler(stream=None) -> logging.Handler:
    """fedcomp's warnings and errors, one line each, on ``stream`` (stdout by default).

    A record logged with ``extra={"console": False}`` goes to the log file only (a
    traceback the command also reports in one line).
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(OneLineFormatter())
    handler.addFilter(lambda record: record.name.split(".")[0] == "fedcomp" and getattr(record, "console", True))
    return handler


@contextlib.contextmanager
def run_logging(run_dir: Path, verbose: bool = False) -> Iterator[Path]:
    """Route log records as the module docstring says while the block runs; yield the log file."""
    root = logging.getLogger()
    path = run_dir / LOG_FILE
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(PlainFormatter(FILE_FORMAT))
    console = console_handler()
    muted = [] if verbose else [
        (handler, handler.level)
        for name in FOREIGN_LOGGERS
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(file_handler)
    root.addHandler(console)
    for handler, _ in muted:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield path
    finally:
        for handler, old in muted:
            handler.setLevel(old)
        root.removeHandler(console)
        root.removeHandler(file_handler)
        file_handler.close()
        root.setLevel(level)
