"""Random-k: seed-shared positions, payload 4k + 8 bytes, unbiased scaling."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.randomk import RandomK
from tests.compressors.trials import errors, within_three_standard_errors


def test_payload_is_the_values_and_one_seed():
    x = np.random.default_rng(0).standard_normal((100, 50), dtype=np.float32)
    t = RandomK(density=0.01)
    enc = t.encode({"w": x}, np.random.default_rng(3))
    assert set(enc.arrays) == {"w/values", "w/seed"}
    assert enc.arrays["w/seed"].dtype == np.uint64 and enc.arrays["w/seed"].size == 1
    assert enc.payload_bytes == 4 * 50 + 8  # k = round(0.01 * 5000) = 50
    dec = t.decode(enc)["w"]
    kept = dec != 0
    assert kept.sum() == 50
    np.testing.assert_array_equal(dec[kept], x[kept])  # no scaling by default


def test_the_mask_comes_from_the_seed_alone():
    x = np.arange(1, 1001, dtype=np.float32)
    t = RandomK(density=0.05)
    enc = t.encode({"w": x}, np.random.default_rng(0))
    # positions regenerated from the seed: the same positions the values came from
    again = np.random.default_rng(int(enc.arrays["w/seed"][0])).choice(
        1000, 50, replace=False, shuffle=False
    )
    np.testing.assert_array_equal(enc.arrays["w/values"], np.sort(again) + 1)
    other = t.encode({"w": x}, np.random.default_rng(1))
    assert not np.array_equal(t.decode(enc)["w"] != 0, t.decode(other)["w"] != 0)


def test_unbiased_option_is_unbiased_and_the_default_is_not():
    x = np.array([0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 0.1, -0.3], dtype=np.float32)
    unbiased = errors(RandomK(density=0.25, unbiased=True), x)
    assert within_three_standard_errors(unbiased).all()
    plain = errors(RandomK(density=0.25), x)  # E = (k/n) x: biased toward 0
    assert not within_three_standard_errors(plain).any()


@pytest.mark.parametrize("density", [0, 1.5, "a", None])
def test_bad_density_names_the_key(density):
    with pytest.raises(ValueError, match="compressor.density"):
        RandomK(density=density)
