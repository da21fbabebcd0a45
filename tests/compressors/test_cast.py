"""fp16 / bf16 casts: 16 bits per entry, values rounded as the formats define."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedcomp.compressors.cast import Cast


def update(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n, dtype=np.float32) * 0.01


def test_fp16_is_numpys_half_and_two_bytes_per_entry():
    x = update().reshape(10, 100)
    enc = Cast("fp16").encode({"w": x}, np.random.default_rng(0))
    assert enc.payload_bytes == 2 * 1000
    dec = Cast("fp16").decode(enc)["w"]
    assert dec.dtype == np.float32 and dec.shape == (10, 100)
    np.testing.assert_array_equal(dec, x.astype(np.float16).astype(np.float32))


def test_bf16_matches_torch_bfloat16_rounding():
    x = np.concatenate(
        [update(), [1.0, -2.5, 3.0000002, 1.00390625, 1.01171875, 0.0, -0.0]]
    ).astype(np.float32)
    enc = Cast("bf16").encode({"w": x}, np.random.default_rng(0))
    assert enc.arrays["w/h"].dtype == np.uint16 and enc.payload_bytes == 2 * x.size
    reference = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(Cast("bf16").decode(enc)["w"], reference)


def test_fp16_overflow_and_bad_format_raise():
    with pytest.raises(ValueError, match="bf16"):
        Cast("fp16").encode({"w": np.array([1e5], np.float32)}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="compressor.format"):
        Cast("fp8")


def test_integer_arrays_pass_through():
    idx = np.arange(5, dtype=np.int32)
    enc = Cast("fp16").encode({"w/idx": idx, "w": update(5)}, np.random.default_rng(0))
    assert enc.arrays["w/idx"] is idx
    assert list(Cast("fp16").decode(enc)) == ["w/idx", "w"]
