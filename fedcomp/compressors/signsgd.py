"""signSGD (Bernstein et al. 2018): one bit per entry, the server takes a majority vote.

Each client sends the signs of its update (``x >= 0`` is ``+``), packed 8 per byte:
``name/signs`` uint8, ``ceil(n / 8)`` bytes, nothing else. A decoded sign becomes
``±step`` (the paper's learning rate: one bit carries no magnitude).

``aggregation`` says how the server combines the clients' signs:

- ``"majority"`` (the paper's signSGD with majority vote): ``step · sign(Σ_i sign_i)``
  per entry, every client one vote whatever its weight; a tie gives 0.
- ``"mean"``: the weighted mean of the decoded ``±step`` updates (plain FedAvg).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Encoded, Tensors
from fedcomp.compressors.bitcodes import packed_size
from fedcomp.compressors.payload import part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite, chunks
from fedcomp.compressors.settings import choice, number

AGGREGATIONS = ("majority", "mean")


def pack_signs(flat: np.ndarray) -> np.ndarray:
    """One bit per entry, set for negative entries, 8 per byte (little-endian bits)."""
    return np.packbits(flat < 0, bitorder="little")


def unpack_signs(packed: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """``+1`` / ``-1`` (float32) of entries ``start .. start + count`` of packed signs."""
    raw = packed[start // 8 : -(-(start + count) // 8)]
    bits = np.unpackbits(raw, bitorder="little")[start % 8 : start % 8 + count]
    return 1 - 2 * bits.astype(np.float32)


def sign_part(arrays: Tensors, who: str, name: str, numel: int, scale: float) -> np.ndarray:
    """``scale · (±1)`` of tensor ``name`` from its ``name/signs`` part (decoded in chunks)."""
    packed = part(arrays, who, name, "signs", np.uint8, packed_size(numel, 1))
    out = np.empty(numel, dtype=np.float32)
    for start, stop in chunks(numel):
        out[start:stop] = unpack_signs(packed, stop - start, start)
        out[start:stop] *= np.float32(scale)
    return out


class SignSGD(PerTensor):
    """signSGD (see the module docstring).

    Parameters
    ----------
    step
        The magnitude a decoded sign stands for (> 0).
    aggregation
        ``"majority"`` vote or weighted ``"mean"`` on the server.
    """

    who = "signsgd"
    parts = ("signs",)

    def __init__(self, step: float = 0.01, aggregation: str = "majority") -> None:
        self.step = number("step", step, 0, low_open=True)
        self.aggregation = choice("aggregation", aggregation, AGGREGATIONS)

    def label(self) -> str:
        return "signSGD" + (" vote" if self.aggregation == "majority" else " mean")

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        return {"signs": pack_signs(flat)}, {}

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        return sign_part(arrays, self.who, name, numel, self.step)

    def aggregate(
        self, payloads: list[Encoded], weights: list[float], reference: Tensors, state: Tensors
    ) -> tuple[Tensors, Tensors] | None:
        """The majority vote (``None``, the weighted mean, for ``aggregation="mean"``).

        The vote covers the tensors the payloads carry (``reference`` may also hold
        tensors that are never sent, e.g. frozen ones).

        Raises
        ------
        DecodeError
            If a payload's tensors differ from the first one's or from ``reference``.
        """
        if self.aggregation == "mean" or not payloads:
            return None
        votes: Tensors = {}
        for encoded in payloads:
            decoded = self.decode(encoded)
            if not votes:
                votes = {
                    name: np.zeros(value.shape, dtype=np.float32) for name, value in decoded.items()
                }
            for name, total in votes.items():
                value = decoded.get(name)
                known = reference.get(name)
                if (
                    value is None
                    or value.shape != total.shape
                    or known is None
                    or known.shape != total.shape
                ):
                    raise DecodeError(
                        f"signsgd {name!r}: payloads disagree on this tensor or its shape"
                    )
                total += np.sign(value)
        return {
            name: np.sign(total) * np.float32(self.step) for name, total in votes.items()
        }, state
