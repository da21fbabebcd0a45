"""Quantize: error bounds, unbiased stochastic rounding, packed payload sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.quantize import Quantize


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(n: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(n, dtype=np.float32)


def per_element(values: np.ndarray, n: int, block_size: int | None) -> np.ndarray:
    """Broadcast one value per block to one per element."""
    bs = n if block_size is None else block_size
    return np.repeat(values, bs)[:n]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("block_size", [None, 64, 7, 5000])
def test_deterministic_error_is_at_most_half_a_step(bits, block_size):
    n = 3001  # odd: a short last block and a partial last byte
    x = normal(n, seed=bits) * 3 + 1
    q = Quantize(bits=bits, block_size=block_size)
    enc = q.encode({"w": x}, rng())
    dec = q.decode(enc)["w"]
    step = per_element(enc.arrays["w/scale"], n, block_size)
    err = np.abs(dec.astype(np.float64) - x)
    slack = 1e-6 * (np.abs(x) + 1)  # float32 arithmetic in decode
    assert np.all(err <= 0.5 * step + slack)
    low = per_element(enc.arrays["w/min"], n, block_size)
    high = low + step * ((1 << bits) - 1)
    assert np.all(dec >= low - slack) and np.all(dec <= high + slack)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_stochastic_rounding_is_unbiased(bits):
    # Tile one vector R times under a per-tensor scale: every copy gets the same grid,
    # so the mean of the R decodes estimates E[decode(x)] for each element.
    reps, n = 4000, 64
    x = np.linspace(-1, 1, n, dtype=np.float32) ** 3
    q = Quantize(bits=bits, rounding="stochastic")
    enc = q.encode({"w": np.tile(x, reps)}, rng(11))
    dec = q.decode(enc)["w"].reshape(reps, n)
    step = float(enc.arrays["w/scale"][0])
    assert np.all(np.abs(dec - x) < step * (1 + 1e-5))
    stderr = step / 2 / np.sqrt(reps)  # rounding noise of one draw is at most step/2 in std
    assert np.all(np.abs(dec.mean(axis=0) - x) <= 5 * stderr)
    assert dec.std(axis=0).max() > 0  # it really is random


def test_deterministic_rounding_is_biased_where_stochastic_is_not():
    x = np.full(10_000, 0.3, dtype=np.float32)
    x[0], x[1] = 0.0, 1.0  # grid at 0 and 1 for 1 bit
    det = Quantize(bits=1)
    sto = Quantize(bits=1, rounding="stochastic")
    assert det.decode(det.encode({"w": x}, rng()))["w"][2:].mean() == 0.0
    assert abs(sto.decode(sto.encode({"w": x}, rng()))["w"][2:].mean() - 0.3) < 0.02


@pytest.mark.parametrize(
    ("bits", "code_bytes"), [(8, 1001), (4, 501), (2, 251), (1, 126)]
)
def test_payload_is_packed_codes_plus_scales_and_mins(bits, code_bytes):
    n = 1001
    q = Quantize(bits=bits, block_size=64)
    enc = q.encode({"w": normal(n)}, rng())
    blocks = -(-n // 64)  # 16
    assert enc.arrays["w/q"].dtype == np.uint8 and enc.arrays["w/q"].nbytes == code_bytes
    assert enc.arrays["w/scale"].dtype == np.float32 and enc.arrays["w/scale"].size == blocks
    assert enc.arrays["w/min"].dtype == np.float32 and enc.arrays["w/min"].size == blocks
    assert enc.payload_bytes == code_bytes + 2 * 4 * blocks


def test_per_tensor_scale_costs_eight_bytes():
    enc = Quantize(bits=4).encode({"w": normal(1_000_000)}, rng())
    assert enc.payload_bytes == 500_000 + 8


@pytest.mark.parametrize(("bits", "expected"), [(4, [0xF0, 0x5A]), (2, [0b11100100]), (1, [0b10110010])])
def test_bit_layout_is_little_endian_within_a_byte(bits, expected):
    levels = (1 << bits) - 1
    codes = {4: [0, 15, 10, 5], 2: [0, 1, 2, 3], 1: [0, 1, 0, 0, 1, 1, 0, 1]}[bits]
    x = np.array(codes, dtype=np.float32) / levels  # grid min 0, max 1: codes exactly
    q = Quantize(bits=bits)
    enc = q.encode({"w": x}, rng())
    assert enc.arrays["w/q"].tolist() == expected
    np.testing.assert_allclose(q.decode(enc)["w"], x, atol=1e-7)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_values_on_the_grid_round_trip_exactly(bits):
    levels = (1 << bits) - 1
    codes = rng(bits).integers(0, levels + 1, size=70_001)
    codes[:2] = (0, levels)
    x = (codes * 0.25 - 3.0).astype(np.float32)  # step 0.25: exact in float32
    q = Quantize(bits=bits)
    np.testing.assert_array_equal(q.decode(q.encode({"w": x}, rng()))["w"], x)


def test_constant_blocks_and_edge_shapes():
    tensors = {
        "const": np.full((4, 33), 1.25, dtype=np.float32),
        "scalar": np.array(-2.0, dtype=np.float32),
        "empty": np.zeros((0,), dtype=np.float32),
        "double": normal(100).astype(np.float64).reshape(10, 10),
        "half": normal(100).astype(np.float16),
        "idx": np.arange(7, dtype=np.int32),
    }
    q = Quantize(bits=4, block_size=16)
    enc = q.encode(tensors, rng())
    assert enc.arrays["idx"] is tensors["idx"]  # integer arrays pass through
    assert enc.arrays["empty/q"].size == 0 and enc.arrays["empty/scale"].size == 0
    dec = q.decode(enc)
    assert list(dec) == list(tensors)
    for name, x in tensors.items():
        assert dec[name].shape == x.shape and dec[name].dtype == x.dtype, name
    np.testing.assert_array_equal(dec["const"], tensors["const"])
    np.testing.assert_array_equal(dec["scalar"], tensors["scalar"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(bad):
    x = normal(1000)
    x[500] = bad
    for block_size in (None, 64):
        with pytest.raises(ValueError, match="'w'"):
            Quantize(bits=8, block_size=block_size).encode({"w": x}, rng())


def test_large_tensor_spanning_several_chunks():
    n = 300_007  # several work chunks, short last block
    x = normal(n)
    for block_size in (None, 100):
        q = Quantize(bits=4, block_size=block_size)
        enc = q.encode({"w": x}, rng())
        dec = q.decode(enc)["w"]
        step = per_element(enc.arrays["w/scale"], n, block_size)
        assert np.all(np.abs(dec - x) <= 0.5 * step + 1e-6)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"bits": 3}, "compressor.bits"),
        ({"bits": 16}, "compressor.bits"),
        ({"bits": True}, "compressor.bits"),
        ({"block_size": 0}, "compressor.block_size"),
        ({"block_size": 6.5}, "compressor.block_size"),
        ({"rounding": "up"}, "compressor.rounding"),
    ],
)
def test_bad_params_raise_value_error_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Quantize(**kwargs)


def encoded():
    q = Quantize(bits=4, block_size=32)
    return q, q.encode({"fc1.weight": normal(1000).reshape(10, 100)}, rng())


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda e: e.arrays.__setitem__("fc1.weight/q", e.arrays["fc1.weight/q"][:-1]),
        lambda e: e.arrays.__setitem__("fc1.weight/scale", e.arrays["fc1.weight/scale"][:-1]),
        lambda e: e.arrays.__setitem__("fc1.weight/min", e.arrays["fc1.weight/min"].astype(np.float64)),
        lambda e: e.arrays.pop("fc1.weight/min"),
        lambda e: e.meta["tensors"]["fc1.weight"].__setitem__("shape", [10, 101]),
        lambda e: e.meta["tensors"]["fc1.weight"].__setitem__("dtype", "not-a-dtype"),
    ],
    ids=["short-codes", "short-scales", "wrong-dtype", "missing-min", "shape-mismatch", "bad-dtype"],
)
def test_corrupt_payload_raises_decode_error_naming_the_tensor(corrupt):
    q, enc = encoded()
    corrupt(enc)
    with pytest.raises(DecodeError, match="fc1.weight"):
        q.decode(enc)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_bad_scale_raises_decode_error(bad):
    q, enc = encoded()
    enc.arrays["fc1.weight/scale"] = enc.arrays["fc1.weight/scale"].copy()
    enc.arrays["fc1.weight/scale"][2] = bad
    with pytest.raises(DecodeError, match="fc1.weight"):
        q.decode(enc)


def test_unknown_bit_width_tag():
    q, enc = encoded()
    enc.meta["bits"] = 3
    with pytest.raises(DecodeError, match="bit width"):
        q.decode(enc)
