"""Byte units: the one formatter every printed or tabulated byte figure goes through."""

from __future__ import annotations

MB = 10**6
MIB = 2**20


def human(num_bytes: float) -> str:
    """``225,083,392 B = 214.66 MiB = 225.08 MB``."""
    exact = f"{num_bytes:,.0f}" if float(num_bytes).is_integer() else f"{num_bytes:,.1f}"
    return f"{exact} B = {num_bytes / MIB:,.2f} MiB = {num_bytes / MB:,.2f} MB"


def short(num_bytes: float) -> str:
    """Compact decimal size for one-line progress output: ``1.23 MB``, ``812 B``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= size:
            return f"{num_bytes / size:.2f} {unit}"
    return f"{num_bytes:.0f} B"
