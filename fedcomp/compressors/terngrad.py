"""TernGrad (Wen et al. 2017): stochastic ternary levels scaled by the tensor's max, unbiased.

For a tensor ``g`` with ``s = max|g_i|``: ``t_i = s · sign(g_i) · b_i`` with
``b_i ~ Bernoulli(|g_i| / s)``. So ``E[t] = g`` and
``E||t - g||² = s·||g||_1 - ||g||_2²`` (each entry contributes ``s|g_i| - g_i²``).
``clip=c`` applies the paper's gradient clipping first: entries are clipped to
``±c·σ`` (``σ`` the tensor's standard deviation; the paper uses ``c = 2.5``), which
lowers ``s`` and the variance at the cost of a small bias.

Wire format per tensor: ``name/scale`` float32 (one) and ``name/codes``, the ternary
digits ``sign·b + 1`` in ``{0, 1, 2}``, packed by ``packing``:

- ``"2bit"`` (default): 2 bits each, 4 per byte: ``ceil(n / 4)`` bytes.
- ``"base3"``: 5 digits per byte in base 3 (``3**5 = 243 <= 256``), 1.6 bits each
  (near ``log2 3 = 1.585``): ``ceil(n / 5)`` bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.bitcodes import pack_codes, packed_size, unpack_codes
from fedcomp.compressors.payload import finite_scalars, part
from fedcomp.compressors.pertensor import CHUNK, PerTensor, TensorCode, as_flat32, check_finite, chunks
from fedcomp.compressors.settings import choice, number

PACKINGS = ("2bit", "base3")
_TRITS = 5
_POWERS = 3 ** np.arange(_TRITS, dtype=np.uint8)


def pack_base3(digits: np.ndarray) -> np.ndarray:
    """Five base-3 digits per byte (first digit least significant)."""
    padded = np.zeros(-(-digits.size // _TRITS) * _TRITS, dtype=np.uint8)
    padded[: digits.size] = digits
    return (padded.reshape(-1, _TRITS) * _POWERS).sum(axis=1, dtype=np.uint8)


def unpack_base3(packed: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` base-3 digits of :func:`pack_base3` bytes (bytes must be < 243)."""
    return ((packed[:, None] // _POWERS) % 3).reshape(-1)[:count]


class TernGrad(PerTensor):
    """TernGrad ternarization (see the module docstring).

    Parameters
    ----------
    clip
        ``c`` of the paper's gradient clipping to ``±c·σ``; ``None`` for none.
    packing
        ``"2bit"`` or ``"base3"``.
    """

    who = "terngrad"
    parts = ("codes", "scale")

    def __init__(self, clip: float | None = None, packing: str = "2bit") -> None:
        self.clip = None if clip is None else number("clip", clip, 0, low_open=True)
        self.packing = choice("packing", packing, PACKINGS)

    def label(self) -> str:
        return "TernGrad" + (f" clip {self.clip:g}σ" if self.clip else "")

    def _codes_size(self, numel: int) -> int:
        return packed_size(numel, 2) if self.packing == "2bit" else -(-numel // _TRITS)

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        if self.clip is not None and flat.size:
            bound = self.clip * float(flat.std())
            flat = np.clip(flat, -bound, bound)
        scale = np.float32(np.abs(flat).max()) if flat.size else np.float32(0)
        keep = rng.random(flat.size, dtype=np.float32) * scale < np.abs(flat)
        digits = (np.sign(flat) * keep + 1).astype(np.uint8)
        codes = pack_codes(digits, 2) if self.packing == "2bit" else pack_base3(digits)
        return {"codes": codes, "scale": np.array([scale], dtype=np.float32)}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        scale = finite_scalars(
            part(arrays, self.who, name, "scale", np.float32, 1), self.who, name, "scale"
        )
        codes = part(arrays, self.who, name, "codes", np.uint8, self._codes_size(numel))
        if self.packing == "base3" and codes.size and codes.max() >= 3**_TRITS:
            raise DecodeError(f"terngrad {name!r}: base-3 byte above {3**_TRITS - 1}")
        out = np.empty(numel, dtype=np.float32)
        step = CHUNK // 40 * 40  # whole bytes in both packings
        for start, stop in chunks(numel, step):
            if self.packing == "2bit":
                digits = unpack_codes(codes[start // 4 : packed_size(stop, 2)], 2, stop - start)
            else:
                digits = unpack_base3(codes[start // _TRITS : -(-stop // _TRITS)], stop - start)
            if digits.max() > 2:
                raise DecodeError(f"terngrad {name!r}: ternary digit 3")
            out[start:stop] = digits
            out[start:stop] -= 1
        out *= scale[0]
        return out
