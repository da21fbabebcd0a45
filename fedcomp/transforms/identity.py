"""The identity transform: send every tensor as it is (the uncompressed baseline)."""

from __future__ import annotations

import numpy as np

from fedcomp.transforms.base import Encoded, Tensors, Transform


class Identity(Transform):
    """Send each tensor unchanged; payload bytes equal dense bytes for fp32 updates."""

    lossy = False

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        return Encoded(arrays=dict(tensors), meta={})

    def decode(self, encoded: Encoded) -> Tensors:
        return dict(encoded.arrays)
