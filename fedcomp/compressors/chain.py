"""Compose compressor stages: the arrays one stage emits are what the next one encodes.

The hooks of the contract pass through: each stage keeps its own encoder memory (under
the key prefix ``"<stage index>:"`` of the chain's state), and the first stage may
aggregate in its compressed domain once the later stages are undone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, RoundInfo, Tensors


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

    def encode_with_state(
        self, tensors: Tensors, rng: np.random.Generator, state: Tensors, info: RoundInfo
    ) -> tuple[Encoded, Tensors]:
        """Encode stage by stage, each with its own slice of ``state`` (prefix ``"i:"``)."""
        metas = []
        current = tensors
        new_state: Tensors = {}
        for i, stage in enumerate(self.stages):
            prefix = f"{i}:"
            mine = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            encoded, kept = stage.encode_with_state(current, rng, mine, info)
            new_state.update({prefix + k: v for k, v in kept.items()})
            metas.append(encoded.meta)
            current = encoded.arrays
        return Encoded(arrays=current, meta={"stages": metas}), new_state

    def _metas(self, encoded: Encoded) -> list:
        metas = encoded.meta.get("stages") if isinstance(encoded.meta, dict) else None
        if not isinstance(metas, list) or len(metas) != len(self.stages):
            raise DecodeError(
                f"chain meta has {len(metas) if isinstance(metas, list) else 'no'} stages, "
                f"expected {len(self.stages)}"
            )
        if not all(isinstance(meta, dict) for meta in metas):
            raise DecodeError("chain meta: every stage's meta must be an object")
        return metas

    def _undo(self, encoded: Encoded, stop: int) -> Encoded:
        """Undo the stages after ``stop`` (in reverse): the payload stage ``stop`` emitted."""
        metas = self._metas(encoded)
        current = encoded.arrays
        for i in range(len(self.stages) - 1, stop, -1):
            stage_payload = Encoded(arrays=current, meta=metas[i], limit=encoded.limit)
            current = self.stages[i].decode(stage_payload)
        return Encoded(arrays=current, meta=metas[stop], limit=encoded.limit)

    def decode(self, encoded: Encoded) -> Tensors:
        return self.stages[0].decode(self._undo(encoded, 0))

    def aggregate(
        self, payloads: list[Encoded], weights: list[float], reference: Tensors, state: Tensors
    ) -> tuple[Tensors, Tensors] | None:
        """The first stage's compressed-domain aggregation after undoing the later stages.

        ``None`` when the first stage has none (decode each payload and average).
        """
        first = self.stages[0]
        if type(first).aggregate is Compressor.aggregate:
            return None
        return first.aggregate([self._undo(p, 0) for p in payloads], weights, reference, state)

    def frozen_names(self, names: list[str]) -> set[str]:
        frozen: set[str] = set()
        for stage in self.stages:
            frozen |= stage.frozen_names(names)
        return frozen

    def adapters(self) -> dict | None:
        """The first stage's adapters: later stages encode what an adapter stage sends.

        Raises
        ------
        ValueError
            If a later stage asks for adapters.
        """
        for i, stage in enumerate(self.stages[1:], start=1):
            if stage.adapters() is not None:
                raise ValueError(f"compressor.stages[{i}]: adapters (lora) must be the first stage")
        return self.stages[0].adapters()

    def params(self) -> dict:
        return {"stages": [{"type": type(s).__name__, **s.params()} for s in self.stages]}

    def label(self) -> str:
        return " + ".join(stage.label() for stage in self.stages)

    def describe(self) -> str:
        return " -> ".join(stage.describe() for stage in self.stages)
