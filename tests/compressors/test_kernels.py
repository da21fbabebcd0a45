"""The compiled block loops give the numpy expressions' float32 results, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors import kernels
from fedcomp.compressors.quantize import Quantize


def _blocks(x: np.ndarray, width: int) -> list[np.ndarray]:
    return [x[i : i + width] for i in range(0, x.size, width)]


@pytest.mark.parametrize("width", [1, 7, 64, 100])
def test_block_range_is_numpy_min_and_max_with_a_short_last_block(width):
    x = np.random.default_rng(width).standard_normal(300 * width + width // 2).astype(np.float32)
    n_blocks = -(-x.size // width)
    low, span = np.empty(n_blocks, np.float32), np.empty(n_blocks, np.float32)
    kernels.block_range(x, width, low, span)
    np.testing.assert_array_equal(low, [b.min() for b in _blocks(x, width)])
    np.testing.assert_array_equal(span, [b.max() - b.min() for b in _blocks(x, width)])


def test_a_range_beyond_float32_overflows_to_inf_for_the_caller_to_refuse():
    x = np.array([-3e38, 3e38, 1.0, 2.0], np.float32)
    low, span = np.empty(2, np.float32), np.empty(2, np.float32)
    kernels.block_range(x, 2, low, span)
    assert np.isinf(span[0]) and span[1] == 1.0
    with pytest.raises(ValueError, match="'w'"):
        Quantize(bits=4, block_size=2).encode({"w": x}, np.random.default_rng(0))


@pytest.mark.parametrize("stochastic", [False, True])
def test_block_codes_are_the_numpy_rounding(stochastic):
    width, levels = 64, np.float32(15)
    x = np.random.default_rng(1).standard_normal(10 * width + 5).astype(np.float32)
    n_blocks = -(-x.size // width)
    low, span = np.empty(n_blocks, np.float32), np.empty(n_blocks, np.float32)
    kernels.block_range(x, width, low, span)
    inv = (levels / span).astype(np.float32)
    noise = np.random.default_rng(2).random(x.size, dtype=np.float32) if stochastic else np.empty(0, np.float32)
    codes = np.empty(x.size, np.uint8)
    kernels.block_codes(x, width, low, inv, noise, levels, codes)
    per_element = np.arange(x.size) // width
    work = (x - low[per_element]) * inv[per_element]
    work = np.minimum(work + noise, levels) if stochastic else work + np.float32(0.5)
    np.testing.assert_array_equal(codes, work.astype(np.uint8))
    assert codes.max() <= 15


def test_block_decode_is_codes_times_scale_plus_min():
    width = 64
    codes = np.random.default_rng(3).integers(0, 16, 10 * width + 9, dtype=np.uint8)
    n_blocks = -(-codes.size // width)
    scale = np.random.default_rng(4).random(n_blocks, dtype=np.float32)
    low = np.random.default_rng(5).standard_normal(n_blocks).astype(np.float32)
    out = np.empty(codes.size, np.float32)
    kernels.block_decode(codes, width, scale, low, out)
    per_element = np.arange(codes.size) // width
    np.testing.assert_array_equal(out, np.multiply(codes, scale[per_element]) + low[per_element])
