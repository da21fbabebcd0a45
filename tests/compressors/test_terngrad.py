"""TernGrad: ternary levels scaled by max|g|, 2 or 1.6 bits, unbiased, exact variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.terngrad import TernGrad, pack_base3, unpack_base3
from tests.compressors.trials import errors, within_three_standard_errors

X = np.array([0.3, -1.2, 0.05, 2.0, -0.7, 0.0, 0.9, -0.01, 1.1], dtype=np.float32)


@pytest.mark.parametrize(
    ("packing", "code_bytes"), [("2bit", math.ceil(1001 / 4)), ("base3", math.ceil(1001 / 5))]
)
def test_payload_by_hand(packing, code_bytes):
    x = np.random.default_rng(0).standard_normal(1001, dtype=np.float32)
    enc = TernGrad(packing=packing).encode({"w": x}, np.random.default_rng(0))
    assert enc.payload_bytes == code_bytes + 4
    assert enc.arrays["w/scale"][0] == np.abs(x).max()
    dec = TernGrad(packing=packing).decode(enc)["w"]
    s = np.abs(x).max()
    assert set(np.unique(np.abs(dec))) <= {0.0, s}
    assert np.all((dec == 0) | (np.sign(dec) == np.sign(x)))


def test_base3_packs_five_digits_per_byte():
    digits = np.array([2, 0, 1, 2, 2, 1], dtype=np.uint8)
    packed = pack_base3(digits)
    assert packed.tolist() == [2 + 0 * 3 + 1 * 9 + 2 * 27 + 2 * 81, 1]
    np.testing.assert_array_equal(unpack_base3(packed, 6), digits)


def test_unbiased_with_the_papers_variance():
    t = TernGrad()
    err = errors(t, X)
    assert within_three_standard_errors(err).all()
    # E||t - g||^2 = s ||g||_1 - ||g||^2 (each entry: s|g_i| - g_i^2)
    x = X.astype(np.float64)
    expected = np.abs(x).max() * np.abs(x).sum() - np.square(x).sum()
    mse = (err**2).sum(axis=1)
    assert abs(mse.mean() - expected) <= 3 * mse.std(ddof=1) / math.sqrt(mse.size)


def test_clipping_lowers_the_scale():
    x = np.concatenate([np.random.default_rng(1).standard_normal(1000), [50.0]]).astype(np.float32)
    enc = TernGrad(clip=2.5).encode({"w": x}, np.random.default_rng(0))
    assert enc.arrays["w/scale"][0] == pytest.approx(2.5 * x.std(), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"clip": 0}, "clip"), ({"packing": "3bit"}, "packing")]
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"compressor.{key}"):
        TernGrad(**kwargs)
