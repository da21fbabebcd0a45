"""A run's progress: a live bar in a terminal, the same plain lines as ever in a log.

The ServerApp prints one line per round (``round   3/20  down ...``,
:class:`fedcomp.flower.server_app.RoundPrinter`). In a terminal, :func:`run_progress`
shows those lines above a one-line bar (which run of a sweep, round, elapsed time,
time left) and cuts each line to the terminal's width; the bar advances on the round
lines (:data:`ROUND_LINE`) and disappears when the run ends. Anywhere else (a pipe, a
log file, CI) it changes nothing: the output stays plain lines.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: The start of the ServerApp's round line: the round done and the number of rounds.
ROUND_LINE = re.compile(r"^round\s+(\d+)/(\d+)\b")


class LineWriter(io.TextIOBase):
    """A text stream that hands every complete line to ``emit`` (thread-safe)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._buffer = self._buffer, ""
        if line:
            self._emit(line)


@contextlib.contextmanager
def run_progress(label: str, num_rounds: int, console: Console | None = None) -> Iterator[None]:
    """Show the bar described in the module docstring while the block runs (terminals only)."""
    console = console or Console(file=sys.stdout)  # the real stdout, not the redirected one
    if not console.is_terminal:
        yield
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        redirect_stdout=False, redirect_stderr=False,
    )
    task = progress.add_task(f"{label} starting", total=num_rounds)

    def emit(line: str) -> None:
        console.print(Text(line), overflow="ellipsis", no_wrap=True, crop=True)
        match = ROUND_LINE.match(line)
        if match:
            progress.update(task, completed=int(match.group(1)), description=f"{label} round")

    writer = LineWriter(emit)
    with progress, contextlib.redirect_stdout(writer):
        try:
            yield
        finally:
            writer.flush()
