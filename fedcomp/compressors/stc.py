"""Sparse Ternary Compression (Sattler et al. 2019): top-k, ±mean magnitude, Golomb positions.

Per floating tensor of ``n`` entries: the top ``density`` entries by magnitude are
selected (by composition with :class:`~fedcomp.compressors.topk.TopK`); with ``k`` of
them kept and ``μ`` their mean magnitude, each kept entry is replaced by ``±μ`` and all
others by zero. What travels:

- ``name/mu`` float32 (one), ``name/signs`` (one bit per kept entry, ``ceil(k / 8)``
  bytes), and ``k`` in the tensor's meta entry;
- ``name/pos``: the gaps between kept positions (``position - previous - 1``, the
  first from ``-1``) Golomb coded with the paper's optimal power-of-two parameter
  ``2^b*``, ``b* = 1 + floor(log2(log(φ - 1) / log(1 - p)))``, ``p = k / n``, ``φ`` the
  golden ratio: about ``b* + 2`` bits per kept entry (see :mod:`~fedcomp.compressors.bitcodes`).

The paper compresses both directions and keeps what was dropped on both sides:
``stc.yaml`` sets ``compressor.error_feedback: true`` and ``compressor.downlink: true``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.bitcodes import packed_size, rice_decode, rice_encode
from fedcomp.compressors.payload import finite_scalars, int_entry, part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite
from fedcomp.compressors.settings import choice, number
from fedcomp.compressors.signsgd import pack_signs, unpack_signs
from fedcomp.compressors.topk import SELECTIONS, TopK

_PHI = (1 + math.sqrt(5)) / 2


def golomb_bits(k: int, numel: int) -> int:
    """``b*``, the paper's Golomb parameter exponent for ``k`` of ``numel`` kept (>= 0)."""
    p = k / numel if numel else 1.0
    if p >= 1 or k == 0:
        return 0
    return max(0, 1 + math.floor(math.log2(math.log(_PHI - 1) / math.log(1 - p))))


class STC(PerTensor):
    """Sparse Ternary Compression (see the module docstring).

    Parameters
    ----------
    density
        Fraction of entries kept per tensor, in (0, 1].
    selection
        TopK's ``"sampled"`` (fast) or ``"exact"`` selection.
    """

    who = "stc"
    parts = ("pos", "signs", "mu")

    def __init__(self, density: float = 0.01, selection: str = "sampled") -> None:
        self.density = number("density", density, 0, 1, low_open=True)
        self.selection = choice("selection", selection, SELECTIONS)
        self._topk = TopK(density=self.density, selection=self.selection, index_encoding="int32")

    def label(self) -> str:
        return f"STC {self.density * 100:g}%"

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        sparse = self._topk.encode({"x": flat}, rng).arrays
        values = sparse.get("x/values", np.empty(0, dtype=np.float32))
        where = sparse.get("x/idx", np.flatnonzero(values)).astype(np.int64)
        nonzero = values != 0
        values, where = values[nonzero], where[nonzero]
        mu = np.abs(values).mean(dtype=np.float64) if values.size else 0.0
        gaps = np.diff(where, prepend=-1) - 1
        parts = {
            "pos": rice_encode(gaps, golomb_bits(values.size, flat.size)),
            "signs": pack_signs(values),
            "mu": np.array([mu], dtype=np.float32),
        }
        return parts, {"k": int(values.size)}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        k = int_entry(entry, "k", self.who, name, 0, numel)
        b = golomb_bits(k, numel)
        mu = finite_scalars(part(arrays, self.who, name, "mu", np.float32, 1), self.who, name, "mu")
        signs = unpack_signs(part(arrays, self.who, name, "signs", np.uint8, packed_size(k, 1)), k)
        stream = part(arrays, self.who, name, "pos", np.uint8)
        # each code is q + 1 + b bits and the gaps sum to at most numel - k
        if stream.size > packed_size(k * (1 + b) + ((numel - k) >> b), 1):
            raise DecodeError(f"stc {name!r}: position stream longer than {k} codes can be")
        where = np.cumsum(rice_decode(stream, b, k, self.who, name) + 1) - 1
        if k and where[-1] >= numel:
            raise DecodeError(f"stc {name!r}: positions beyond {numel} entries")
        out = np.zeros(numel, dtype=np.float32)
        out[where] = signs * mu[0]
        return out
