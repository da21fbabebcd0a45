"""Validation of compressor settings: each check raises ``ValueError`` naming ``compressor.<key>``.

The config layer turns these into exit code 2 before any simulation starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def number(
    key: str,
    value: Any,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    prefix: str = "compressor",
) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"{prefix}.{key}: must be a number in {bracket}{low:g}, {high:g}], got {value!r}"
        )
    return float(value)


def integer(
    key: str, value: Any, low: int, high: int | None = None, prefix: str = "compressor"
) -> int:
    """``value`` as an int ``>= low`` (and ``<= high`` when given)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{prefix}.{key}: must be an int >= {low}{upper}, got {value!r}")
    return value


def boolean(key: str, value: Any, prefix: str = "compressor") -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{prefix}.{key}: must be true or false, got {value!r}")
    return value


def choice(key: str, value: Any, options: Sequence[str], prefix: str = "compressor") -> str:
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise ValueError(f"{prefix}.{key}: must be one of {list(options)}, got {value!r}")
    return value
