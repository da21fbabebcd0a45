"""QSGD (Alistarh et al. 2017): norm-scaled stochastic quantization to ``s`` levels, unbiased.

Each tensor is cut into buckets of ``bucket_size`` consecutive entries (the paper's
``d``; the last one may be shorter). For a bucket ``v`` and entry ``v_i``:
``r = s·|v_i| / ||v||_2`` lies in ``[0, s]``; with ``l = floor(r)`` the level is ``l + 1``
with probability ``r - l`` and ``l`` otherwise, so ``E[level] = r``. The entry decodes
to ``||v||_2 · sign(v_i) · level / s``: unbiased, with variance
``E||Q(v) - v||² <= min(d / s², sqrt(d) / s) · ||v||²`` (the paper's Lemma 3.1).

Wire format per tensor (``coding``):

- ``"fixed"`` (default): ``name/codes``, the signed level ``sign·level + s`` in
  ``[0, 2s]`` at ``ceil(log2(2s + 1))`` bits each, bit-packed (5 bits at ``s = 15``:
  ``log2(s + 1)`` for the level plus one for the sign); ``name/norms`` float32, one
  per bucket.
- ``"elias"``: the paper's sparse code: the positions of the non-zero levels as
  Elias-gamma-coded gaps (``name/gaps``), the levels Elias-gamma coded
  (``name/levels``), one sign bit each (``name/signs``), ``name/norms``; the meta entry
  holds the count ``nnz``. Cheaper when few levels are non-zero (small ``s``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.bitcodes import gamma_decode, gamma_encode, pack_codes, packed_size, unpack_codes
from fedcomp.compressors.payload import finite_scalars, int_entry, part
from fedcomp.compressors.pertensor import CHUNK, PerTensor, TensorCode, as_flat32, check_finite, chunks
from fedcomp.compressors.settings import choice, integer

CODINGS = ("fixed", "elias")
#: Largest ``s``: signed codes then fit the 16-bit packer.
MAX_LEVELS = (1 << 15) - 1
_FIXED_PARTS = ("codes", "norms")
_ELIAS_PARTS = ("gaps", "levels", "signs", "norms")


def code_width(levels: int) -> int:
    """Bits of one signed code in ``[0, 2s]``."""
    return math.ceil(math.log2(2 * levels + 1))


def variance_bound(bucket: int, levels: int) -> float:
    """The paper's bound on ``E||Q(v) - v||² / ||v||²`` for a bucket of ``bucket`` entries."""
    return min(bucket / levels**2, math.sqrt(bucket) / levels)


class QSGD(PerTensor):
    """QSGD stochastic quantization (see the module docstring).

    Parameters
    ----------
    levels
        ``s``, the number of positive levels, >= 1.
    bucket_size
        Entries sharing one norm, >= 1.
    coding
        ``"fixed"`` width codes or the paper's ``"elias"`` coding.
    """

    who = "qsgd"

    def __init__(self, levels: int = 15, bucket_size: int = 512, coding: str = "fixed") -> None:
        self.levels = integer("levels", levels, 1, MAX_LEVELS)
        self.bucket_size = integer("bucket_size", bucket_size, 1)
        self.coding = choice("coding", coding, CODINGS)

    def label(self) -> str:
        return f"QSGD s={self.levels}" + (" Elias" if self.coding == "elias" else "")

    def parts_of(self, entry: Any) -> tuple[str, ...]:
        return _ELIAS_PARTS if self.coding == "elias" else _FIXED_PARTS

    def _buckets(self, numel: int) -> int:
        return -(-numel // self.bucket_size)

    def _bucket_norms(self, flat: np.ndarray) -> np.ndarray:
        pad = self._buckets(flat.size) * self.bucket_size - flat.size
        squares = np.square(np.pad(flat, (0, pad)), dtype=np.float64).reshape(-1, self.bucket_size)
        return np.sqrt(squares.sum(axis=1)).astype(np.float32)

    def quantize(self, flat: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Signed levels in ``[-s, s]`` (int32) and bucket norms of ``flat``."""
        norms = self._bucket_norms(flat)
        per_entry = np.repeat(norms, self.bucket_size)[: flat.size]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(per_entry > 0, np.abs(flat) / per_entry, 0.0) * self.levels
        ratio = np.minimum(ratio, self.levels)  # float rounding can exceed s by an ulp
        low = np.floor(ratio)
        level = low + (rng.random(flat.size, dtype=np.float32) < (ratio - low))
        return (np.sign(flat) * level).astype(np.int32), norms

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        signed, norms = self.quantize(flat, rng)
        if self.coding == "fixed":
            codes = (signed + self.levels).astype(np.uint16)
            return {"codes": pack_codes(codes, code_width(self.levels)), "norms": norms}, {}
        nonzero = np.flatnonzero(signed)
        gaps = np.diff(nonzero, prepend=-1)
        parts = {
            "gaps": gamma_encode(gaps),
            "levels": gamma_encode(np.abs(signed[nonzero])),
            "signs": np.packbits(signed[nonzero] < 0, bitorder="little"),
            "norms": norms,
        }
        return parts, {"nnz": int(nonzero.size)}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        norms = part(arrays, self.who, name, "norms", np.float32, self._buckets(numel))
        norms = finite_scalars(norms, self.who, name, "norms")
        if (norms < 0).any():
            raise DecodeError(f"qsgd {name!r}: negative bucket norm")
        out = np.zeros(numel, dtype=np.float32)
        scale = norms / np.float32(self.levels)
        if self.coding == "fixed":
            width = code_width(self.levels)
            codes = part(arrays, self.who, name, "codes", np.uint8, packed_size(numel, width))
            step = max(1, CHUNK // (8 * self.bucket_size)) * 8 * self.bucket_size
            for start, stop in chunks(numel, step):
                raw = codes[start * width // 8 : packed_size(stop, width)]
                values = unpack_codes(raw, width, stop - start).astype(np.int32) - self.levels
                if values.max() > self.levels:
                    raise DecodeError(f"qsgd {name!r}: code above 2s = {2 * self.levels}")
                first = start // self.bucket_size
                last = first - (-(stop - start) // self.bucket_size)
                per_entry = np.repeat(scale[first:last], self.bucket_size)[: stop - start]
                out[start:stop] = values * per_entry
            return out
        nnz = int_entry(entry, "nnz", self.who, name, 0, numel)
        gaps = part(arrays, self.who, name, "gaps", np.uint8)
        levels = part(arrays, self.who, name, "levels", np.uint8)
        signs = part(arrays, self.who, name, "signs", np.uint8, packed_size(nnz, 1))
        # gamma(g) has 2·floor(log2 g) + 1 bits and the gaps sum to at most numel,
        # so (Jensen) the gaps need at most nnz·(2·log2(numel / nnz) + 1) bits.
        gap_bits = nnz * (2 * math.log2(numel / nnz) + 1) if nnz else 0
        level_bits = nnz * (2 * int(math.log2(self.levels)) + 1)
        if gaps.size > gap_bits / 8 + 1 or levels.size > packed_size(level_bits, 1):
            raise DecodeError(f"qsgd {name!r}: Elias streams longer than {nnz} codes can be")
        where = np.cumsum(gamma_decode(gaps, nnz, self.who, name)) - 1
        level = gamma_decode(levels, nnz, self.who, name)
        if nnz and (where[-1] >= numel or level.max() > self.levels):
            raise DecodeError(f"qsgd {name!r}: position or level out of range")
        negative = np.unpackbits(signs, count=nnz, bitorder="little").astype(bool)
        out[where] = np.where(negative, -level, level) * scale[where // self.bucket_size]
        return out
