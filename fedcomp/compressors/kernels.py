"""Compiled loops (numba) for per-block quantization.

numpy runs one inner-loop call per row when it reduces or broadcasts along short rows,
so at a block of 64 the per-block minimum, maximum and scaling cost several times the
arithmetic. These loops run over the blocks in one compiled pass each and give the
same float32 results as the numpy expressions they replace (element-wise IEEE
arithmetic in the same order; no reassociation, no fused multiply-add).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

# Explicit signatures: each loop compiles (or loads from numba's cache) when this module is
# imported, never inside a measured encode or decode. Inputs may be read-only (payloads).
_IN_F32 = types.Array(types.float32, 1, "C", readonly=True)
_IN_U8 = types.Array(types.uint8, 1, "C", readonly=True)
_OUT_F32 = types.Array(types.float32, 1, "C")
_OUT_U8 = types.Array(types.uint8, 1, "C")


@numba.njit(
    [types.void(_IN_F32, types.int64, _OUT_F32, _OUT_F32)],
    cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"},
)
def block_range(flat: np.ndarray, block_size: int, low: np.ndarray, span: np.ndarray) -> None:
    """Write each block's minimum into ``low`` and ``max - min`` into ``span``.

    All arrays are 1-D and C-contiguous (the signatures above), as in every loop here.

    ``flat`` must hold only finite values (the caller checks): the loop is compiled
    assuming no NaN or inf, which lets it vectorize. ``span`` may still overflow to inf
    for a block whose range exceeds float32 (the caller checks ``span``).
    """
    n = flat.size
    for b in range(low.size):
        block = flat[b * block_size : min(n, (b + 1) * block_size)]
        lo = block[0]
        hi = block[0]
        for i in range(1, block.size):
            v = block[i]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
        low[b] = lo
        span[b] = hi - lo


@numba.njit(
    [types.void(_IN_F32, types.int64, _IN_F32, _IN_F32, _IN_F32, types.float32, _OUT_U8)], cache=True, nogil=True
)
def block_codes(
    flat: np.ndarray,
    block_size: int,
    low: np.ndarray,
    inv: np.ndarray,
    noise: np.ndarray,
    levels: np.float32,
    codes: np.ndarray,
) -> None:
    """Write the uint8 code of every element: ``floor((x - min) * inv + r)`` per block.

    ``r`` is 0.5 (round half up) when ``noise`` is empty, else ``noise[i]`` (stochastic
    rounding, capped at ``levels``), as :meth:`Quantize._codes_into` computes them.
    """
    n = flat.size
    half = np.float32(0.5)
    stochastic = noise.size > 0
    for b in range(low.size):
        start = b * block_size
        stop = min(n, start + block_size)
        x = flat[start:stop]
        out = codes[start:stop]
        lo = low[b]
        scale = inv[b]
        if stochastic:
            u = noise[start:stop]
            for i in range(x.size):
                out[i] = np.int32(min((x[i] - lo) * scale + u[i], levels))
        else:
            for i in range(x.size):
                out[i] = np.int32((x[i] - lo) * scale + half)


@numba.njit([types.void(_IN_U8, types.int64, _IN_F32, _IN_F32, _OUT_F32)], cache=True, nogil=True)
def block_decode(codes: np.ndarray, block_size: int, scale: np.ndarray, low: np.ndarray, out: np.ndarray) -> None:
    """Write ``code * scale + min`` per block into ``out`` (float32, as numpy's
    ``np.multiply(codes, scale) + min``)."""
    n = codes.size
    for b in range(low.size):
        start = b * block_size
        stop = min(n, start + block_size)
        q = codes[start:stop]
        x = out[start:stop]
        step = scale[b]
        lo = low[b]
        for i in range(q.size):
            x[i] = np.float32(q[i]) * step + lo
