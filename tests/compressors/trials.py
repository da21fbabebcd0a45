"""Seeded repeated trials of a compressor: the statistics the paper tests need."""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.base import Compressor

TRIALS = 2000


def errors(compressor: Compressor, x: np.ndarray, trials: int = TRIALS) -> np.ndarray:
    """``decode(encode(x)) - x`` for seeds ``0 .. trials - 1`` (one row per trial)."""
    rows = []
    for seed in range(trials):
        encoded = compressor.encode({"x": x}, np.random.default_rng(seed))
        rows.append(compressor.decode(encoded)["x"].reshape(-1) - x.reshape(-1))
    return np.array(rows, dtype=np.float64)


def within_three_standard_errors(err: np.ndarray) -> np.ndarray:
    """Per entry: is the mean error within 3 standard errors of 0?"""
    mean = err.mean(axis=0)
    standard_error = err.std(axis=0, ddof=1) / np.sqrt(err.shape[0])
    return np.abs(mean) <= 3 * standard_error + 1e-12
