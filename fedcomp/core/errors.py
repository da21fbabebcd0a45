"""Errors every layer may raise; commands turn them into exit codes."""

from __future__ import annotations

import re


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names key and allowed values.

    Commands exit with code 2 on it, before any engine starts.
    """


#: ANSI colour and cursor escape sequences (Ray and Flower colour their tracebacks).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour and cursor codes (for log files and ledger cells)."""
    return _ANSI.sub("", text)


#: A line naming an exception: ``pkg.mod.NameError: message`` (the message may be empty).
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Fault|Interrupt|Exit))(?::\s*(.*))?$")
#: Exceptions that only wrap the one a client raised (Flower's and Ray's envelopes).
_WRAPPERS = frozenset({"ClientAppException", "RayTaskError", "RayActorError", "ActorDiedError"})
#: Flower's error reply text, ``<class 'pkg.Name'>:<'message'>`` (its Simulation Engine's worker).
_FLOWER_ENVELOPE = re.compile(r"<class '(?:[\w.]+\.)?(\w+(?:\(\w+\))?)'>:<'(.*)'>", re.DOTALL)
#: The words Flower's ``ClientAppException`` puts before the message of the exception it wraps.
_CLIENTAPP_PREFIX = "Exception ClientAppException occurred. Message:"
#: What marks text as a traceback rather than a message.
_TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "', "direct cause of the following exception")


def one_line(reason: str, limit: int = 300) -> str:
    """A failure reason fit for a ledger cell and a console line.

    Colour codes are removed. A traceback (Python's, or Ray's ``RayTaskError`` text that
    Flower wraps in its error reply) is reduced to the exception that started it, as
    ``Name: message``: chained tracebacks print the original exception first, and
    Flower's and Ray's wrappers (:data:`_WRAPPERS`) are skipped. Without a traceback,
    Flower's envelope (``<class '...ClientAppException'>:<'Exception ClientAppException
    occurred. Message: ...'>``) is reduced to the message. Whitespace runs become one
    space; the result is at most ``limit`` characters.
    """
    text = strip_ansi(str(reason))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if any(mark in text for mark in _TRACEBACK_MARKS):
        found = [m for line in lines if (m := _EXCEPTION_LINE.match(line)) and m.group(1) not in _WRAPPERS]
        if found:
            name, message = found[0].group(1), (found[0].group(2) or "").strip()
            lines = [f"{name}: {message}" if message else name]
    elif envelope := _FLOWER_ENVELOPE.search(text):
        name, message = envelope.group(1), envelope.group(2).replace(_CLIENTAPP_PREFIX, "").strip()
        inner = message if name in _WRAPPERS else f"{name}: {message}"
        lines = [part for part in (text[: envelope.start()].strip(), inner) if part]
    text = re.sub(r"\s+", " ", " ".join(lines))
    return text if len(text) <= limit else text[: limit - 1] + "…"
