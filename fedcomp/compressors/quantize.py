"""Asymmetric min-max quantization of floating arrays to 8, 4, 2 or 1 bit codes.

Scheme
------
Each block of ``block_size`` consecutive elements (or the whole tensor when
``block_size`` is ``None``) gets ``min = min(x)`` and ``scale = (max(x) - min(x)) /
(2**bits - 1)``; an element is sent as the integer code ``q = round((x - min) /
scale)`` in ``[0, 2**bits - 1]`` and decoded as ``min + q * scale``.

- ``rounding="deterministic"``: round half up, so ``|x - decode(x)| <= scale / 2``.
- ``rounding="stochastic"``: ``q = floor((x - min) / scale + u)`` with ``u ~ U[0, 1)``
  from the passed ``rng``: ``E[decode(x)] = x`` (unbiased), error < ``scale``.

A block whose range is 0 (or below float32's smallest normal number, where
``1/scale`` would overflow) is sent with ``scale = 0`` and decodes to its minimum.

Wire format (per floating array ``name``)
-----------------------------------------
- ``name/q`` uint8: the codes, bit-packed for ``bits < 8`` (little-endian within a
  byte: code ``i`` of a byte sits at bits ``[i*bits, (i+1)*bits)``), so it holds
  ``ceil(numel * bits / 8)`` bytes.
- ``name/scale`` and ``name/min`` float32: one per block (``ceil(numel /
  block_size)`` blocks, or 1 per tensor; 0 for an empty tensor).
- ``meta = {"bits": b, "block_size": bs|None, "tensors": {name: {"shape", "dtype"}}}``.

Non-floating arrays (e.g. top-k indices) pass through unchanged under their names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcomp.compressors import kernels
from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, encode_floating, spec_from_meta
from fedcomp.compressors.payload import Budget

BITS = (1, 2, 4, 8)
ROUNDINGS = ("deterministic", "stochastic")
_TINY = np.finfo(np.float32).tiny
#: Elements per work chunk (a 512 KiB float32 buffer stays in cache).
_CHUNK = 1 << 17


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint8 codes (< 2**bits, length a multiple of 8 // bits) into bytes."""
    if bits == 8:
        return codes
    if bits == 1:
        return np.packbits(codes, bitorder="little")
    if bits == 4:
        v = codes.view("<u2")  # byte 2i in bits 0-7, byte 2i+1 in bits 8-15
        return ((v | (v >> 4)) & 0xFF).astype(np.uint8)
    v = codes.view("<u4")  # bits == 2: four codes per 32-bit word
    v = v | (v >> 6)
    return ((v | (v >> 12)) & 0xFF).astype(np.uint8)


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`_pack`: the first ``count`` uint8 codes."""
    if bits == 8:
        return packed[:count]
    if bits == 1:
        return np.unpackbits(packed, count=count, bitorder="little")
    if bits == 4:
        w = packed.astype("<u2")
        w |= w << 4
        w &= 0x0F0F
    else:
        w = packed.astype("<u4")
        w |= w << 6
        w |= w << 12
        w &= 0x03030303
    return w.view(np.uint8)[:count]


class Quantize(Compressor):
    """Quantize every floating array to ``bits``-bit codes with per-block min and scale.

    Parameters
    ----------
    bits
        Code width: 8, 4, 2 or 1 (sub-byte codes are bit-packed).
    block_size
        Elements sharing one (scale, min) pair; ``None`` for one pair per tensor.
        Smaller blocks track local ranges (lower error) at 8 bytes per block.
    rounding
        ``"deterministic"`` (nearest, error <= half a step) or ``"stochastic"``
        (unbiased, random from the ``rng`` passed to :meth:`encode`).
    """

    lossy = True

    def __init__(
        self, bits: int = 8, block_size: int | None = None, rounding: str = "deterministic"
    ) -> None:
        if isinstance(bits, bool) or bits not in BITS:
            raise ValueError(f"compressor.bits: must be one of {list(BITS)}, got {bits!r}")
        if block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
        ):
            raise ValueError(
                "compressor.block_size: must be an int > 0 or null (per tensor), "
                f"got {block_size!r}"
            )
        if rounding not in ROUNDINGS:
            raise ValueError(
                f"compressor.rounding: must be one of {list(ROUNDINGS)}, got {rounding!r}"
            )
        self.bits = int(bits)
        self.block_size = block_size
        self.rounding = rounding

    def label(self) -> str:
        block = f" b{self.block_size}" if self.block_size else ""
        stochastic = " stoch" if self.rounding == "stochastic" else ""
        return f"{self.bits}-bit{block}{stochastic}"

    # ------------------------------------------------------------------ encoding
    def _block_stats(
        self, name: str, lo: np.ndarray, span: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scale (sent) and inverse scale (used to encode) from block min and range."""
        levels = np.float32((1 << self.bits) - 1)
        if not (np.isfinite(lo).all() and np.isfinite(span).all()):
            raise ValueError(f"quantize {name!r}: tensor holds NaN or inf, or its range overflows float32")
        flat_block = span < _TINY * levels  # scale below float32's smallest normal: 1/scale overflows
        scale = span / levels
        scale[flat_block] = 0
        inv = np.divide(levels, span, out=np.zeros_like(span), where=~flat_block)
        return scale, inv

    def _codes_into(
        self, src: np.ndarray, lo: np.float32, inv: np.float32, work: np.ndarray, noise: np.ndarray, codes: np.ndarray
    ) -> None:
        """Write the codes of ``src`` under one (min, inverse scale) pair (per-tensor blocks).

        ``noise``: the uniform draws of stochastic rounding (empty: round half up).
        """
        levels = np.float32((1 << self.bits) - 1)
        np.subtract(src, lo, out=work)  # >= 0 exactly since x >= min
        work *= inv
        if noise.size:
            work += noise
            np.minimum(work, levels, out=work)  # u -> 1 can round up to levels + 1
        else:
            work += np.float32(0.5)  # < levels + 1 since work <= levels * (1 + few ulp)
        np.copyto(codes, work, casting="unsafe")  # truncating non-negative floats = floor

    def _encode_one(
        self, name: str, array: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes (packed), scales and mins of one floating array.

        Works through the tensor in cache-sized chunks that reuse one float32 work
        buffer: large fresh temporaries cost more in page faults than the arithmetic.
        """
        flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
        n = flat.size
        packed = np.empty((n * self.bits + 7) // 8, dtype=np.uint8)
        if n == 0:
            empty = np.empty(0, dtype=np.float32)
            return packed, empty, empty
        per_tensor = self.block_size is None or self.block_size >= n
        bs = n if per_tensor else int(self.block_size)  # type: ignore[arg-type]
        n_blocks = -(-n // bs)
        if per_tensor:
            low = np.array([flat.min()], dtype=np.float32)  # min/max propagate NaN
            span = np.array([flat.max()], dtype=np.float32) - low
            if np.isnan(span).any():
                raise ValueError(f"quantize {name!r}: tensor holds NaN; cannot quantize")
            scale, inv = self._block_stats(name, low, span)
            step = _CHUNK
        else:
            low = np.empty(n_blocks, dtype=np.float32)
            scale = np.empty(n_blocks, dtype=np.float32)
            inv = np.empty(n_blocks, dtype=np.float32)
            span = np.empty(n_blocks, dtype=np.float32)
            step = max(8, _CHUNK // bs // 8 * 8) * bs  # whole blocks, a multiple of 8 codes
            # the compiled range loop assumes finite values: a NaN or inf makes the sum non-finite
            if not np.isfinite(flat.sum()) and not np.isfinite(flat).all():
                raise ValueError(f"quantize {name!r}: tensor holds NaN or inf; cannot quantize")
        step = min(step, -(-n // 8) * 8)  # one chunk for a small tensor (so chunks start at a block)
        levels = np.float32((1 << self.bits) - 1)
        work = np.empty(step if per_tensor else 0, dtype=np.float32)
        noise = np.empty(step if self.rounding == "stochastic" else 0, dtype=np.float32)
        codes = np.empty(step, dtype=np.uint8)
        for start in range(0, n, step):
            stop = min(n, start + step)
            seg = flat[start:stop]
            size = stop - start
            if self.rounding == "stochastic":
                rng.random(dtype=np.float32, out=noise[:size])
            if per_tensor:
                self._codes_into(seg, low[0], inv[0], work[:size], noise[:size], codes[:size])
            else:
                blocks = slice(start // bs, -(-stop // bs))
                kernels.block_range(seg, bs, low[blocks], span[blocks])
                scale[blocks], inv[blocks] = self._block_stats(name, low[blocks], span[blocks])
                kernels.block_codes(seg, bs, low[blocks], inv[blocks], noise[:size], levels, codes[:size])
            padded = -(-size // 8) * 8
            codes[size:padded] = 0
            packed[start * self.bits // 8 : (start * self.bits + padded * self.bits) // 8][:] = (
                _pack(codes[:padded], self.bits)[: (size * self.bits + 7) // 8]
            )
        return packed, scale, low

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        def encode_one(name: str, array: np.ndarray) -> tuple[Tensors, dict[str, Any]]:
            q, scale, low = self._encode_one(name, array, rng)
            return {"q": q, "scale": scale, "min": low}, {}

        arrays, specs = encode_floating(tensors, encode_one)
        meta = {"bits": self.bits, "block_size": self.block_size, "tensors": specs}
        return Encoded(arrays=arrays, meta=meta)

    # ------------------------------------------------------------------ decoding
    @staticmethod
    def _decode_one(
        name: str, entry: Any, arrays: Tensors, bits: int, block_size: int | None
    ) -> np.ndarray:
        shape, dtype = spec_from_meta(name, entry, "quantize")
        n = math.prod(shape)
        got = {}
        for part, want_dtype in (("q", np.uint8), ("scale", np.float32), ("min", np.float32)):
            a = arrays.get(f"{name}/{part}")
            if a is None:
                raise DecodeError(f"quantize {name!r}: missing array '{name}/{part}'")
            if a.dtype != want_dtype or a.ndim != 1:
                raise DecodeError(
                    f"quantize {name!r}: '{name}/{part}' must be 1-D {np.dtype(want_dtype)}, "
                    f"got {a.dtype}{list(a.shape)}"
                )
            got[part] = a
        q, scale, low = got["q"], got["scale"], got["min"]
        if q.size != (n * bits + 7) // 8:
            raise DecodeError(
                f"quantize {name!r}: {q.size} code bytes, shape {list(shape)} at {bits} bits "
                f"needs {(n * bits + 7) // 8}"
            )
        bs = n if block_size is None else min(block_size, n)
        blocks = -(-n // bs) if n else 0
        if scale.size != blocks or low.size != blocks:
            raise DecodeError(
                f"quantize {name!r}: {scale.size} scales and {low.size} mins, "
                f"shape {list(shape)} needs {blocks} blocks"
            )
        if not (np.isfinite(scale).all() and np.isfinite(low).all()) or (scale < 0).any():
            raise DecodeError(f"quantize {name!r}: non-finite or negative scale/min")
        out = np.empty(n, dtype=np.float32)
        if n:
            per_tensor = block_size is None or block_size >= n
            step = _CHUNK if per_tensor else max(8, _CHUNK // bs // 8 * 8) * bs
            for start in range(0, n, step):
                stop = min(n, start + step)
                first = start * bits // 8
                codes = _unpack(q[first : (stop * bits + 7) // 8], bits, stop - start)
                if per_tensor:
                    np.multiply(codes, scale[0], out=out[start:stop])
                    out[start:stop] += low[0]
                    continue
                blocks = slice(start // bs, -(-stop // bs))
                kernels.block_decode(np.ascontiguousarray(codes), bs, np.ascontiguousarray(scale[blocks]),
                                     np.ascontiguousarray(low[blocks]), out[start:stop])
        return out.astype(dtype, copy=False).reshape(shape)

    def decode(self, encoded: Encoded) -> Tensors:
        meta = encoded.meta
        bits = meta.get("bits")
        if isinstance(bits, bool) or bits not in BITS:
            raise DecodeError(f"quantize: unknown bit width {bits!r}, expected one of {list(BITS)}")
        block_size = meta.get("block_size")
        if block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
        ):
            raise DecodeError(f"quantize: bad block_size {block_size!r} in meta")
        specs = meta.get("tensors")
        if not isinstance(specs, dict):
            raise DecodeError("quantize: meta has no 'tensors' dict")
        budget = Budget.of(encoded)
        owner = {f"{name}/{part}": name for name in specs for part in ("q", "scale", "min")}
        out: Tensors = {}
        for key, array in encoded.arrays.items():
            name = owner.get(key)
            if name is None:
                out[key] = array
            elif name not in out:
                shape, dtype = spec_from_meta(name, specs[name], "quantize")
                budget.take("quantize", name, math.prod(shape) * max(4, dtype.itemsize))
                out[name] = self._decode_one(name, specs[name], encoded.arrays, bits, block_size)
        for name in specs:
            if name not in out:
                raise DecodeError(f"quantize {name!r}: missing array '{name}/q'")
        return out
