"""Natural compression: ±powers of two around each entry, 9 bits, unbiased, variance <= t²/8."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.natural import Natural
from tests.compressors.trials import errors, within_three_standard_errors

X = np.array([0.3, -1.2, 0.05, 2.0, -0.7, 0.0, 0.9, -0.01, 1.5, 1e-40, -3e-39], dtype=np.float32)


def test_nine_bits_per_entry():
    x = np.random.default_rng(0).standard_normal(1001, dtype=np.float32)
    enc = Natural().encode({"w": x}, np.random.default_rng(0))
    assert enc.payload_bytes == math.ceil(1001 * 9 / 8)


def test_each_entry_becomes_one_of_its_two_neighbouring_powers_of_two():
    x = np.random.default_rng(1).standard_normal(5000, dtype=np.float32)
    dec = Natural().decode(Natural().encode({"w": x}, np.random.default_rng(2)))["w"]
    low = 2.0 ** np.floor(np.log2(np.abs(x).astype(np.float64)))
    assert np.all((np.abs(dec) == low) | (np.abs(dec) == 2 * low))
    assert np.all(np.sign(dec) == np.sign(x))


def test_exact_powers_of_two_and_zero_are_kept():
    x = np.array([0.0, 1.0, -0.25, 1024.0], dtype=np.float32)
    np.testing.assert_array_equal(
        Natural().decode(Natural().encode({"w": x}, np.random.default_rng(0)))["w"], x
    )


def test_unbiased_with_variance_at_most_an_eighth_of_t_squared():
    err = errors(Natural(), X)
    assert within_three_standard_errors(err).all()
    # the paper's bound, exactly: (t - a)(2a - t) <= t²/8 for a <= |t| < 2a ...
    x = X.astype(np.float64)
    a = 2.0 ** np.floor(np.log2(np.where(x == 0, 1, np.abs(x))))
    exact = np.where(x == 0, 0, (np.abs(x) - a) * (2 * a - np.abs(x)))
    normal = np.abs(X) >= np.finfo(np.float32).tiny
    assert np.all(exact[normal] <= x[normal] ** 2 / 8)
    # ... and the measured variance matches it (subnormals round to 0 or 2^-126 instead)
    mse = (err**2).mean(axis=0)
    spread = (err**2).std(axis=0, ddof=1) / np.sqrt(err.shape[0])
    assert np.all(np.abs(mse - exact)[normal] <= 3 * spread[normal] + 1e-12)


def test_overflow_raises():
    with pytest.raises(ValueError, match="range"):
        Natural().encode(
            {"w": np.array([np.finfo(np.float32).max], np.float32)}, np.random.default_rng(0)
        )
