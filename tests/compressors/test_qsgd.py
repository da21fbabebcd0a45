"""QSGD: levels of the bucket norm, bits per entry, unbiasedness, the paper's variance bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.qsgd import QSGD, code_width, variance_bound
from tests.compressors.trials import errors, within_three_standard_errors


def vector(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def test_fixed_codes_take_log2_s_plus_one_bits_and_one_norm_per_bucket():
    x = vector(2000)
    q = QSGD(levels=15, bucket_size=512)
    enc = q.encode({"w": x}, np.random.default_rng(0))
    assert code_width(15) == 5 == math.log2(15 + 1) + 1
    buckets = math.ceil(2000 / 512)
    assert enc.arrays["w/norms"].size == buckets
    assert enc.payload_bytes == math.ceil(2000 * 5 / 8) + 4 * buckets


def test_decoded_entries_are_the_two_neighbouring_levels_of_the_paper():
    x = vector(1000)
    q = QSGD(levels=4, bucket_size=100)
    dec = q.decode(q.encode({"w": x}, np.random.default_rng(1)))["w"]
    for b in range(10):
        v, d = x[b * 100 : (b + 1) * 100], dec[b * 100 : (b + 1) * 100]
        norm = np.linalg.norm(v.astype(np.float64))
        r = np.abs(v) / norm * 4
        level = np.abs(d) / norm * 4
        assert np.allclose(level, np.round(level), atol=1e-4)  # on the grid norm * l / s
        assert np.all((np.round(level) == np.floor(r)) | (np.round(level) == np.floor(r) + 1))
        assert np.all((d == 0) | (np.sign(d) == np.sign(v)))


@pytest.mark.parametrize("coding", ["fixed", "elias"])
def test_unbiased(coding):
    x = np.array([0.3, -1.2, 0.05, 2.0, -0.7, 0.0, 0.9, -0.01], dtype=np.float32)
    assert within_three_standard_errors(
        errors(QSGD(levels=2, bucket_size=4, coding=coding), x)
    ).all()


@pytest.mark.parametrize(("levels", "bucket"), [(1, 64), (4, 64), (15, 512)])
def test_variance_within_the_papers_bound(levels, bucket):
    x = vector(bucket, seed=levels)
    err = errors(QSGD(levels=levels, bucket_size=bucket), x, trials=300)
    mse = (err**2).sum(axis=1)
    bound = variance_bound(bucket, levels) * float(np.square(x, dtype=np.float64).sum())
    assert mse.mean() <= bound
    assert variance_bound(bucket, levels) == min(bucket / levels**2, math.sqrt(bucket) / levels)


def test_elias_coding_bits_by_hand():
    x = vector(300, seed=4)
    q = QSGD(levels=1, bucket_size=300, coding="elias")
    enc = q.encode({"w": x}, np.random.default_rng(2))
    dec = q.decode(enc)["w"]
    where = np.flatnonzero(dec)
    gaps = np.diff(where, prepend=-1)
    gamma_bits = lambda v: 2 * (int(v).bit_length() - 1) + 1  # noqa: E731
    assert enc.meta["tensors"]["w"]["nnz"] == where.size
    assert enc.arrays["w/gaps"].size == math.ceil(sum(gamma_bits(g) for g in gaps) / 8)
    assert enc.arrays["w/levels"].size == math.ceil(where.size / 8)  # level 1 -> "1"
    assert enc.arrays["w/signs"].size == math.ceil(where.size / 8)
    np.testing.assert_allclose(np.abs(dec[where]), np.linalg.norm(x.astype(np.float64)), rtol=1e-5)


def test_fixed_and_elias_decode_the_same_draw():
    x = vector(700)
    a = QSGD(levels=3, bucket_size=128).encode({"w": x}, np.random.default_rng(5))
    b = QSGD(levels=3, bucket_size=128, coding="elias").encode({"w": x}, np.random.default_rng(5))
    np.testing.assert_array_equal(
        QSGD(levels=3, bucket_size=128).decode(a)["w"],
        QSGD(levels=3, bucket_size=128, coding="elias").decode(b)["w"],
    )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"levels": 0}, "levels"),
        ({"bucket_size": 0}, "bucket_size"),
        ({"coding": "huffman"}, "coding"),
        ({"levels": 1 << 20}, "levels"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"compressor.{key}"):
        QSGD(**kwargs)
