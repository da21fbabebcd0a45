"""Half-precision casts: send every floating tensor as fp16 or bf16 (16 bits per entry).

- ``fp16``: IEEE binary16 (``np.float16``), round to nearest even; 10 mantissa bits,
  largest finite value 65504. An update beyond that range cannot be cast and raises
  ``ValueError`` (use ``bf16``).
- ``bf16``: bfloat16, the upper 16 bits of the float32 pattern after rounding to
  nearest even: float32's range, 7 mantissa bits. numpy has no bfloat16 type, so the
  patterns travel as ``uint16`` and decode by shifting them back into float32.

Wire format: ``name/h`` (float16, or uint16 for bf16), ``numel × 2`` bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import Tensors
from fedcomp.compressors.payload import part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite
from fedcomp.compressors.settings import choice

FORMATS = ("fp16", "bf16")
_FP16_MAX = float(np.finfo(np.float16).max)


def to_bf16(flat: np.ndarray) -> np.ndarray:
    """bfloat16 patterns (uint16) of finite float32 values, rounded to nearest even."""
    bits = flat.view(np.uint32)
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return ((bits + rounding) >> np.uint32(16)).astype(np.uint16)


def from_bf16(patterns: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 patterns (exact)."""
    return (patterns.astype(np.uint32) << np.uint32(16)).view(np.float32)


class Cast(PerTensor):
    """Send every floating tensor in a 16-bit format.

    Parameters
    ----------
    format
        ``"fp16"`` (IEEE half) or ``"bf16"`` (bfloat16).
    """

    who = "cast"
    parts = ("h",)

    def __init__(self, format: str = "fp16") -> None:  # noqa: A002 - the config key
        self.format = choice("format", format, FORMATS)

    def label(self) -> str:
        return self.format

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        if self.format == "bf16":
            return {"h": to_bf16(flat)}, {}
        if flat.size and float(np.abs(flat).max()) > _FP16_MAX:
            raise ValueError(
                f"cast {name!r}: values beyond ±{_FP16_MAX:g} overflow float16; use compressor=bf16"
            )
        return {"h": flat.astype(np.float16)}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        dtype = np.uint16 if self.format == "bf16" else np.float16
        half = part(arrays, self.who, name, "h", dtype, numel)
        return from_bf16(half) if self.format == "bf16" else half.astype(np.float32)
