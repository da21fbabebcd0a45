"""Derived seeds: one run seed fixes partitioning, sampling, init, training and rounding."""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 32-bit seed derived from integers (run seed, round, partition, purpose)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
