"""Lossless: exact round trips for every dtype, measured payload, corrupt streams."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import zstandard

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.lossless import Lossless


def sample_tensors() -> dict[str, np.ndarray]:
    g = np.random.default_rng(0)
    return {
        "f32": g.standard_normal((30, 40), dtype=np.float32),
        "f64": g.standard_normal(17),
        "f16": g.standard_normal(9).astype(np.float16),
        "i64": np.arange(100, dtype=np.int64),
        "u8": g.integers(0, 4, size=1000, dtype=np.uint8),
        "bool": g.random(33) > 0.5,
        "big_endian": np.arange(5, dtype=">i4"),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "strided": g.standard_normal((10, 10), dtype=np.float32)[::2, ::3],
    }


@pytest.mark.parametrize(("codec", "level"), [("zstd", 3), ("zstd", 19), ("zstd", -1), ("zlib", 6), ("zlib", 0)])
def test_round_trip_is_exact(codec, level):
    x = sample_tensors()
    t = Lossless(codec=codec, level=level)
    enc = t.encode(x, np.random.default_rng(0))
    assert set(enc.arrays) == {f"{n}/z" for n in x}
    assert all(a.dtype == np.uint8 for a in enc.arrays.values())
    dec = t.decode(enc)
    assert list(dec) == list(x)
    for name, a in x.items():
        assert dec[name].dtype == a.dtype and dec[name].shape == a.shape, name
        assert dec[name].tobytes() == np.ascontiguousarray(a).tobytes(), name
        assert dec[name].flags.writeable


def test_payload_is_the_compressed_stream_length():
    x = {"codes": np.repeat(np.arange(4, dtype=np.uint8), 25_000)}
    enc = Lossless(codec="zlib", level=6).encode(x, np.random.default_rng(0))
    assert enc.payload_bytes == len(zlib.compress(x["codes"].tobytes(), 6))
    assert enc.payload_bytes < x["codes"].nbytes // 100
    enc = Lossless(codec="zstd", level=3).encode(x, np.random.default_rng(0))
    assert enc.payload_bytes == len(zstandard.ZstdCompressor(level=3).compress(x["codes"].tobytes()))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"codec": "lz4"}, "compressor.codec"),
        ({"codec": "zlib", "level": 10}, "compressor.level"),
        ({"codec": "zstd", "level": 23}, "compressor.level"),
        ({"level": "max"}, "compressor.level"),
    ],
)
def test_bad_params_raise_value_error_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Lossless(**kwargs)


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_corrupt_payload_raises_decode_error_naming_the_tensor(codec):
    t = Lossless(codec=codec)
    x = {"fc1.weight": np.random.default_rng(0).standard_normal(1000, dtype=np.float32)}
    enc = t.encode(x, np.random.default_rng(0))
    truncated = enc.arrays["fc1.weight/z"][:-20]
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(type(enc)(arrays={"fc1.weight/z": truncated}, meta=enc.meta))
    enc.meta["tensors"]["fc1.weight"]["shape"] = [999]
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)
    enc.meta["tensors"]["fc1.weight"] = {"shape": [1000], "dtype": "O"}
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(enc)
    with pytest.raises(DecodeError, match="fc1.weight"):
        t.decode(type(enc)(arrays={}, meta=t.encode(x, np.random.default_rng(0)).meta))


def test_codec_tag_must_match():
    enc = Lossless(codec="zlib").encode({"w": np.ones(3, dtype=np.float32)}, np.random.default_rng(0))
    with pytest.raises(DecodeError, match="codec"):
        Lossless(codec="zstd").decode(enc)
