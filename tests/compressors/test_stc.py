"""STC: top-k as ±mean magnitude, Golomb-coded positions with the paper's parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.stc import STC, golomb_bits


def test_golomb_parameter_is_the_papers_formula():
    phi = (1 + math.sqrt(5)) / 2
    for p in (0.001, 0.01, 0.1, 0.3):
        expected = 1 + math.floor(math.log2(math.log(phi - 1) / math.log(1 - p)))
        assert golomb_bits(round(p * 100_000), 100_000) == max(0, expected)
    assert golomb_bits(10, 1000) == 6  # p = 0.01


def test_ternary_values_and_payload_by_hand():
    x = np.random.default_rng(0).standard_normal(20_000).astype(np.float32)
    stc = STC(density=0.01, selection="exact")
    enc = stc.encode({"w": x}, np.random.default_rng(0))
    dec = stc.decode(enc)["w"]
    kept = np.argsort(-np.abs(x))[:200]
    mu = np.abs(x[kept]).astype(np.float64).mean()
    expected = np.zeros_like(x)
    expected[kept] = np.sign(x[kept]) * mu
    np.testing.assert_allclose(dec, expected, rtol=1e-6)
    # Golomb bits: gap d >= 0 costs (d >> b) + 1 + b bits; b = 6 at p = 0.01
    where = np.sort(kept)
    gaps = np.diff(where, prepend=-1) - 1
    b = golomb_bits(200, 20_000)
    golomb = int(((gaps >> b) + 1 + b).sum())
    assert enc.meta["tensors"]["w"]["k"] == 200
    assert enc.arrays["w/pos"].size == math.ceil(golomb / 8)
    assert enc.payload_bytes == math.ceil(golomb / 8) + math.ceil(200 / 8) + 4
    assert 7 < 8 * enc.payload_bytes / 200 < 10  # about 1 + b* + 2 bits per kept entry


def test_bad_density_names_the_key():
    with pytest.raises(ValueError, match="compressor.density"):
        STC(density=0)
