"""Natural compression (Horváth et al. 2019): stochastic rounding to a power of two, unbiased.

An entry ``t`` with ``2^e <= |t| < 2^(e+1)`` becomes ``sign(t)·2^(e+1)`` with
probability ``(|t| - 2^e) / 2^e`` and ``sign(t)·2^e`` otherwise, so ``E[C(t)] = t``
and ``E(C(t) - t)² <= t² / 8`` (the paper's variance ``ω = 1/8``).

On float32 this is exact bit arithmetic: ``2^e`` is ``t`` with its 23 mantissa bits
cleared, and the probability of rounding up is ``mantissa / 2^23``. Subnormal entries
(``|t| < 2^-126``) round to 0 or ``2^-126`` the same way: still unbiased, but beyond
the ``t²/8`` bound (an 8-bit exponent cannot name smaller powers of two). What
remains of an entry is its sign and 8 exponent bits: 9 bits, packed (``name/codes``,
``ceil(9n / 8)`` bytes), code ``sign << 8 | exponent`` (exponent 0 is zero).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.bitcodes import pack_codes, packed_size, unpack_codes
from fedcomp.compressors.payload import part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite, chunks

WIDTH = 9
_MANTISSA = np.uint32((1 << 23) - 1)
_EXPONENT_MAX = 254  # 255 is inf/NaN


class Natural(PerTensor):
    """Natural compression: each entry rounded stochastically to a signed power of two."""

    who = "natural"
    parts = ("codes",)

    def label(self) -> str:
        return "natural"

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        bits = flat.view(np.uint32)
        exponent = (bits >> np.uint32(23)) & np.uint32(0xFF)
        up = rng.integers(0, 1 << 23, size=flat.size, dtype=np.uint32) < (bits & _MANTISSA)
        exponent = exponent + up
        if exponent.size and int(exponent.max()) > _EXPONENT_MAX:
            raise ValueError(f"natural {name!r}: an entry rounds up beyond float32's range")
        codes = ((bits >> np.uint32(31)) << np.uint32(8)) | exponent
        return {"codes": pack_codes(codes.astype(np.uint16), WIDTH)}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        packed = part(arrays, self.who, name, "codes", np.uint8, packed_size(numel, WIDTH))
        out = np.empty(numel, dtype=np.uint32)
        for start, stop in chunks(numel):
            raw = packed[start * WIDTH // 8 : packed_size(stop, WIDTH)]
            codes = unpack_codes(raw, WIDTH, stop - start).astype(np.uint32)
            exponent = codes & np.uint32(0xFF)
            if int(exponent.max()) > _EXPONENT_MAX:
                raise DecodeError(f"natural {name!r}: exponent 255 (infinity) in a code")
            out[start:stop] = ((codes >> np.uint32(8)) << np.uint32(31)) | (
                exponent << np.uint32(23)
            )
        return out.view(np.float32)
