"""Lossless byte compression (zlib or zstd) of every carried array."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import zstandard

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, array_spec, spec_from_meta
from fedcomp.compressors.payload import Budget

CODECS = ("zlib", "zstd")
#: Valid compression levels per codec (zstd also has negative "fast" levels).
LEVELS = {"zlib": (0, 9), "zstd": (-7, 22)}


class Lossless(Compressor):
    """Compress the raw bytes of each array with zlib or zstd.

    Each input array ``name`` becomes one uint8 array ``name/z`` holding the
    compressed bytes; its dtype and shape go to ``meta["tensors"][name]``. Decoding
    restores every array bit for bit. On raw fp32 updates the gain is small
    (mantissas look random); it pays off after top-k or quantization, whose index
    gaps and codes are far from uniform.

    Parameters
    ----------
    codec
        ``"zstd"`` (via the ``zstandard`` package) or ``"zlib"``.
    level
        Compression level: zlib 0..9, zstd -7..22. Higher is smaller and slower.
    """

    lossy = False

    def __init__(self, codec: str = "zstd", level: int = 3) -> None:
        if codec not in CODECS:
            raise ValueError(f"compressor.codec: must be one of {list(CODECS)}, got {codec!r}")
        low, high = LEVELS[codec]
        if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
            raise ValueError(
                f"compressor.level: must be an int in [{low}, {high}] for codec {codec!r}, "
                f"got {level!r}"
            )
        self.codec = codec
        self.level = level

    def label(self) -> str:
        return f"{self.codec}-{self.level}"

    def _compress(self, data: memoryview) -> bytes:
        if self.codec == "zstd":
            return zstandard.ZstdCompressor(level=self.level).compress(data)
        return zlib.compress(data, self.level)

    def _decompress(self, name: str, data: bytes, size: int) -> bytes:
        try:
            if self.codec == "zstd":
                # the frame header claims a size and a window; refuse a claim beyond the
                # tensor before zstd allocates for it (it trusts a stated content size)
                frame = zstandard.get_frame_parameters(data)
                if frame.content_size not in (size, zstandard.CONTENTSIZE_UNKNOWN):
                    raise DecodeError(
                        f"lossless {name!r}: zstd frame claims {frame.content_size} bytes, "
                        f"the tensor has {size}"
                    )
                window = max(1 << 10, 1 << max(0, size - 1).bit_length())
                decompressor = zstandard.ZstdDecompressor(max_window_size=window)
                return decompressor.decompress(data, max_output_size=size)
            raw = zlib.decompressobj()
            out = raw.decompress(data, size)
            if raw.unconsumed_tail:
                raise DecodeError(f"lossless {name!r}: zlib stream longer than {size} bytes")
            if not raw.eof:
                raise DecodeError(f"lossless {name!r}: truncated zlib stream")
            return out
        except (zstandard.ZstdError, zlib.error) as err:
            raise DecodeError(f"lossless {name!r}: corrupt {self.codec} stream: {err}") from err

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        arrays: Tensors = {}
        specs: dict[str, Any] = {}
        for name, array in tensors.items():
            if array.dtype.hasobject:
                raise ValueError(f"lossless {name!r}: object arrays cannot be sent")
            data = np.ascontiguousarray(array)
            packed = self._compress(memoryview(data.reshape(-1).view(np.uint8)))
            arrays[f"{name}/z"] = np.frombuffer(packed, dtype=np.uint8)
            specs[name] = array_spec(array)
        return Encoded(arrays=arrays, meta={"codec": self.codec, "tensors": specs})

    def decode(self, encoded: Encoded) -> Tensors:
        codec = encoded.meta.get("codec")
        if codec != self.codec:
            raise DecodeError(
                f"lossless: payload codec {codec!r} but this stage uses {self.codec!r}"
            )
        specs = encoded.meta.get("tensors")
        if not isinstance(specs, dict):
            raise DecodeError("lossless: meta has no 'tensors' dict")
        expected = {f"{name}/z" for name in specs}
        extra = sorted(set(encoded.arrays) - expected)
        if extra:
            raise DecodeError(f"lossless: arrays not described in meta: {extra}")
        out: Tensors = {}
        budget = Budget.of(encoded)
        for name, entry in specs.items():
            shape, dtype = spec_from_meta(name, entry, "lossless")
            budget.take("lossless", name, math.prod(shape) * dtype.itemsize)
            blob = encoded.arrays.get(f"{name}/z")
            if blob is None:
                raise DecodeError(f"lossless {name!r}: missing array '{name}/z'")
            if blob.dtype != np.uint8 or blob.ndim != 1:
                raise DecodeError(f"lossless {name!r}: expected 1-D uint8 bytes, got {blob.dtype}")
            size = math.prod(shape) * dtype.itemsize
            raw = self._decompress(name, blob.tobytes(), size)
            if len(raw) != size:
                raise DecodeError(
                    f"lossless {name!r}: decompressed {len(raw)} bytes, shape {list(shape)} "
                    f"of {dtype.str} needs {size}"
                )
            out[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        return out
