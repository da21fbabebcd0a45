"""Random-k sparsification with a seed-shared mask: only the seed and the values travel.

Each floating tensor of ``n`` entries keeps ``k = max(1, round(density · n))`` positions
chosen uniformly without replacement by a generator seeded from a fresh 64-bit seed
(drawn from the encoder's ``rng``). The receiver regenerates the same positions from
the seed, so no index is sent (Stich et al. 2018 "Sparsified SGD with memory" use it
with error feedback, ``compressor.error_feedback``).

``unbiased=true`` scales the kept values by ``n / k``: each entry is kept with
probability ``k / n``, so ``E[decode(encode(x))] = x``.

Wire format per tensor: ``name/values`` float32 (k entries, in increasing position) and
``name/seed`` uint64 (one): ``4k + 8`` bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.payload import part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, seed_array, seeded
from fedcomp.compressors.settings import boolean, number


def kept_count(density: float, numel: int) -> int:
    """Entries random-k keeps out of ``numel`` (at least one of a non-empty tensor)."""
    return min(numel, max(1, round(density * numel)))


def positions(seed: np.ndarray, numel: int, k: int) -> np.ndarray:
    """The sorted positions both sides derive from ``seed``."""
    chosen = seeded(seed).choice(numel, size=k, replace=False, shuffle=False)
    chosen.sort()
    return chosen


class RandomK(PerTensor):
    """Keep ``density`` of each tensor's entries at random positions shared by a seed.

    Parameters
    ----------
    density
        Fraction of entries kept, in (0, 1].
    unbiased
        Scale the kept values by ``n / k`` so the decoded update is unbiased.
    """

    who = "randomk"
    parts = ("values", "seed")

    def __init__(self, density: float = 0.01, unbiased: bool = False) -> None:
        self.density = number("density", density, 0, 1, low_open=True)
        self.unbiased = boolean("unbiased", unbiased)

    def label(self) -> str:
        return f"random-k {self.density * 100:g}%" + (" unbiased" if self.unbiased else "")

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        seed = seed_array(rng)
        if flat.size == 0:
            return {"values": np.empty(0, dtype=np.float32), "seed": seed}, {}
        k = kept_count(self.density, flat.size)
        values = flat[positions(seed, flat.size, k)]
        if self.unbiased:
            values = values * np.float32(flat.size / k)
        return {"values": values.astype(np.float32, copy=False), "seed": seed}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        seed = part(arrays, self.who, name, "seed", np.uint64, 1)
        values = part(arrays, self.who, name, "values", np.float32)
        k = kept_count(self.density, numel) if numel else 0
        if values.size != k:
            raise DecodeError(
                f"randomk {name!r}: {values.size} values, density {self.density:g} of {numel} "
                f"entries keeps {k}"
            )
        out = np.zeros(numel, dtype=np.float32)
        if k:
            out[positions(seed, numel, k)] = values
        return out
