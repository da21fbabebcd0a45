"""The identity compressor: send every tensor as it is (the uncompressed baseline)."""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.base import Compressor, Encoded, Tensors


class Identity(Compressor):
    """Send each tensor unchanged; payload bytes equal dense bytes for fp32 updates."""

    lossy = False
    is_identity = True

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        return Encoded(arrays=dict(tensors), meta={})

    def decode(self, encoded: Encoded) -> Tensors:
        return dict(encoded.arrays)

    def label(self) -> str:
        return "none"
