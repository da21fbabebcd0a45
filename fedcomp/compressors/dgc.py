"""Deep Gradient Compression (Lin et al. 2018): top-k with momentum correction.

Per round, with the client's update ``g`` (the pseudo-gradient ``trained − received``)
and the memory ``u`` (momentum) and ``v`` (accumulation) it keeps between rounds:

1. local clipping: ``g ← g · min(1, clip_norm / ||g||_2)`` over the whole update
   (``clip_norm`` null: none);
2. momentum correction: ``u ← m·u + g``, ``v ← v + u``;
3. sparsification: the entries of ``v`` in the top ``density_t`` by magnitude travel
   (by composition with :class:`~fedcomp.compressors.topk.TopK`, same wire format);
4. momentum factor masking: the sent entries are cleared in both ``v`` and ``u``.

Warm-up: the density falls exponentially from ``warmup_density`` in round 1 to
``density`` after ``warmup_rounds`` rounds (the paper's 25 % → 6.25 % → 1.56 % →
0.4 % → 0.1 % over four epochs is ``warmup_density=0.25, warmup_rounds=4,
density=0.001``). The accumulation *is* DGC's error feedback, so ``dgc.yaml`` sets
``compressor.error_feedback: false``.
"""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.base import Compressor, Encoded, RoundInfo, Tensors
from fedcomp.compressors.settings import choice, integer, number
from fedcomp.compressors.topk import SELECTIONS, TopK


class DGC(Compressor):
    """Deep Gradient Compression (see the module docstring).

    Parameters
    ----------
    density
        Final fraction of entries sent, in (0, 1].
    momentum
        ``m``, in [0, 1).
    clip_norm
        L2 norm the update is clipped to before accumulation (> 0), or ``None``.
    warmup_rounds
        Rounds of the exponential warm-up, >= 0 (0: ``density`` from round 1).
    warmup_density
        Density of round 1 of the warm-up, in [density, 1].
    selection
        TopK's ``"sampled"`` (fast) or ``"exact"`` selection.
    """

    lossy = True

    def __init__(
        self,
        density: float = 0.001,
        momentum: float = 0.9,
        clip_norm: float | None = None,
        warmup_rounds: int = 4,
        warmup_density: float = 0.25,
        selection: str = "sampled",
    ) -> None:
        self.density = number("density", density, 0, 1, low_open=True)
        self.momentum = number("momentum", momentum, 0, 1)
        if self.momentum >= 1:
            raise ValueError(f"compressor.momentum: must be in [0, 1), got {momentum!r}")
        self.clip_norm = (
            None if clip_norm is None else number("clip_norm", clip_norm, 0, low_open=True)
        )
        self.warmup_rounds = integer("warmup_rounds", warmup_rounds, 0)
        self.warmup_density = number("warmup_density", warmup_density, 0, 1, low_open=True)
        if self.warmup_rounds and self.warmup_density < self.density:
            raise ValueError(
                f"compressor.warmup_density: must be >= compressor.density ({density}) "
                f"during a warm-up, got {warmup_density!r}"
            )
        self.selection = choice("selection", selection, SELECTIONS)
        self._decoder = TopK(density=self.density, selection=self.selection)

    def label(self) -> str:
        return f"DGC {self.density * 100:g}%"

    def density_at(self, server_round: int) -> float:
        """The density of round ``server_round`` (from 1) under the warm-up schedule."""
        if server_round > self.warmup_rounds:
            return self.density
        ratio = self.density / self.warmup_density
        return self.warmup_density * ratio ** ((server_round - 1) / self.warmup_rounds)

    def _clipped(self, tensors: Tensors) -> dict[str, np.ndarray]:
        floats = {
            name: np.asarray(a, dtype=np.float32)
            for name, a in tensors.items()
            if np.issubdtype(a.dtype, np.floating)
        }
        if self.clip_norm is not None:
            norm = float(
                np.sqrt(sum(np.square(a, dtype=np.float64).sum() for a in floats.values()))
            )
            if norm > self.clip_norm:
                factor = np.float32(self.clip_norm / norm)
                floats = {name: a * factor for name, a in floats.items()}
        return floats

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        """Stateless DGC: clip and send the top ``density`` (no memory, no warm-up)."""
        return self._decoder.encode({**tensors, **self._clipped(tensors)}, rng)

    def encode_with_state(
        self, tensors: Tensors, rng: np.random.Generator, state: Tensors, info: RoundInfo
    ) -> tuple[Encoded, Tensors]:
        """One DGC round with momentum ``u`` and accumulation ``v`` kept in ``state``."""
        accumulated: Tensors = {}
        momenta: Tensors = {}
        for name, g in self._clipped(tensors).items():
            u = state.get(f"{name}/u")
            v = state.get(f"{name}/v")
            u = g.copy() if u is None or u.shape != g.shape else self.momentum * u + g
            v = u.copy() if v is None or v.shape != g.shape else v + u
            momenta[name], accumulated[name] = u, v
        topk = TopK(density=self.density_at(info.server_round), selection=self.selection)
        encoded = topk.encode({**tensors, **accumulated}, rng)
        sent = topk.decode(encoded)
        new_state: Tensors = {}
        for name, v in accumulated.items():
            kept = sent[name] != 0
            new_state[f"{name}/u"] = np.where(kept, np.float32(0), momenta[name])
            new_state[f"{name}/v"] = np.where(kept, np.float32(0), v)
        return encoded, new_state

    def decode(self, encoded: Encoded) -> Tensors:
        return self._decoder.decode(encoded)
