"""Compose compressor stages: the arrays one stage emits are what the next one encodes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors


class Chain(Compressor):
    """Apply ``stages`` in order to encode and in reverse order to decode.

    Each stage's ``meta`` is kept under its index (``meta["stages"][i]``) so decoding
    can undo every stage. The chain is lossy when any stage is.

    Parameters
    ----------
    stages
        Compressor instances, e.g. ``[Freeze(...), TopK(...), Quantize(bits=8)]``.
    """

    def __init__(self, stages: Sequence[Compressor]) -> None:
        if not stages:
            raise ValueError("compressor.stages: a chain needs at least one stage")
        for i, stage in enumerate(stages):
            if not isinstance(stage, Compressor):
                raise TypeError(
                    f"compressor.stages[{i}]: expected a Compressor, got {type(stage).__name__}"
                )
        self.stages = list(stages)
        self.lossy = any(stage.lossy for stage in self.stages)

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        metas = []
        current = tensors
        for stage in self.stages:
            encoded = stage.encode(current, rng)
            metas.append(encoded.meta)
            current = encoded.arrays
        return Encoded(arrays=current, meta={"stages": metas})

    def decode(self, encoded: Encoded) -> Tensors:
        metas = encoded.meta.get("stages")
        if not isinstance(metas, list) or len(metas) != len(self.stages):
            raise DecodeError(
                f"chain meta has {len(metas) if isinstance(metas, list) else 'no'} stages, "
                f"expected {len(self.stages)}"
            )
        current = encoded.arrays
        for stage, meta in zip(reversed(self.stages), reversed(metas)):
            current = stage.decode(Encoded(arrays=current, meta=meta))
        return current

    def frozen_names(self, names: list[str]) -> set[str]:
        frozen: set[str] = set()
        for stage in self.stages:
            frozen |= stage.frozen_names(names)
        return frozen

    def params(self) -> dict:
        return {"stages": [{"type": type(s).__name__, **s.params()} for s in self.stages]}

    def label(self) -> str:
        return " + ".join(stage.label() for stage in self.stages)

    def describe(self) -> str:
        return " -> ".join(stage.describe() for stage in self.stages)
