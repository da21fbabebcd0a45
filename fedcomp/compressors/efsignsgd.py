"""EF-signSGD (Karimireddy et al. 2019): the scaled sign ``(||p||_1 / d) · sign(p)``.

Each tensor ``p`` of ``d`` entries travels as its signs (1 bit each, ``name/signs``,
``ceil(d / 8)`` bytes) and one float32 scale ``||p||_1 / d`` (``name/scale``). The paper
pairs it with error feedback: the channel adds the residual ``p - decode(encode(p))``
to the next round's update (``compressor.error_feedback: true`` in ``efsignsgd.yaml``),
which is what makes the biased sign converge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import Tensors
from fedcomp.compressors.payload import finite_scalars, part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite
from fedcomp.compressors.signsgd import pack_signs, sign_part


class EFSignSGD(PerTensor):
    """Scaled sign compression of EF-signSGD (error feedback comes from the channel)."""

    who = "efsignsgd"
    parts = ("signs", "scale")

    def label(self) -> str:
        return "EF-signSGD"

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        scale = np.abs(flat).mean(dtype=np.float64) if flat.size else 0.0
        return {"signs": pack_signs(flat), "scale": np.array([scale], dtype=np.float32)}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        scale = finite_scalars(
            part(arrays, self.who, name, "scale", np.float32, 1), self.who, name, "scale"
        )
        return sign_part(arrays, self.who, name, numel, float(scale[0]))
