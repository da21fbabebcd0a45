"""EDEN / DRIVE: seed-shared Hadamard rotation, 1 bit + one scale per block, unbiased variant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import hadamard

from fedcomp.compressors.eden import EDEN, fwht
from tests.compressors.trials import errors, within_three_standard_errors


def test_fwht_is_the_hadamard_matrix():
    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    np.testing.assert_allclose(fwht(x), x @ hadamard(32).T, atol=1e-4)


def test_decode_is_the_papers_formula_by_hand():
    x = np.random.default_rng(1).standard_normal(8).astype(np.float32)
    eden = EDEN(block_size=8)
    enc = eden.encode({"w": x}, np.random.default_rng(2))
    d = 1 - 2 * np.random.default_rng(int(enc.arrays["w/seed"][0])).integers(0, 2, 8, dtype=np.int8)
    rotation = hadamard(8) * d / math.sqrt(8)  # y = H D x / sqrt(8)
    y = rotation @ x
    scale = np.dot(x, x) / np.abs(y).sum()  # unbiased: ||x||^2 / ||y||_1
    expected = rotation.T @ (scale * np.where(y >= 0, 1.0, -1.0))
    np.testing.assert_allclose(eden.decode(enc)["w"], expected, rtol=1e-5, atol=1e-6)


def test_one_bit_per_padded_entry_plus_one_scale_per_block_and_a_seed():
    x = np.random.default_rng(0).standard_normal(3000).astype(np.float32)
    enc = EDEN(block_size=1024).encode({"w": x}, np.random.default_rng(0))
    # two full blocks + the last 952 padded to 1024
    assert enc.payload_bytes == math.ceil(3072 / 8) + 4 * 3 + 8


def test_unbiased_over_the_rotation_at_realistic_block_sizes():
    x = np.random.default_rng(3).standard_normal(1024).astype(np.float32)
    unbiased = within_three_standard_errors(errors(EDEN(block_size=1024), x))
    # 3 standard errors: 0.27 % of unbiased entries land outside by chance
    assert unbiased[:16].all() and (~unbiased).mean() <= 0.01
    biased = within_three_standard_errors(
        errors(EDEN(unbiased=False, block_size=1024), x, trials=500)
    )
    assert (~biased).mean() > 0.5


def test_tiny_blocks_show_the_hadamard_rotations_bias():
    # The randomized Hadamard transform only approximates a uniform random rotation:
    # with 16-entry blocks the unbiased scale is measurably biased (documented).
    x = np.random.default_rng(3).standard_normal(16).astype(np.float32)
    assert not within_three_standard_errors(errors(EDEN(block_size=16), x)).all()


def test_normalized_error_near_the_papers_constants():
    x = np.random.default_rng(4).standard_normal(4096).astype(np.float32)
    energy = float(np.square(x, dtype=np.float64).sum())
    unbiased = (errors(EDEN(block_size=4096), x, trials=100) ** 2).sum(axis=1).mean() / energy
    biased = (errors(EDEN(unbiased=False, block_size=4096), x, trials=100) ** 2).sum(
        axis=1
    ).mean() / energy
    assert unbiased == pytest.approx(math.pi / 2 - 1, rel=0.05)  # EDEN/DRIVE unbiased: pi/2 - 1
    assert biased == pytest.approx(1 - 2 / math.pi, rel=0.05)  # DRIVE: 1 - 2/pi


@pytest.mark.parametrize("block_size", [1, 1000, "8"])
def test_block_size_must_be_a_power_of_two(block_size):
    with pytest.raises(ValueError, match="compressor.block_size"):
        EDEN(block_size=block_size)
