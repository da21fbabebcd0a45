"""PowerSGD (Vogels et al. 2019): rank-``r`` factors from one power iteration, warm-started.

A tensor with at least two dimensions is viewed as the matrix ``M`` (``m = shape[0]``
rows, ``n = numel / m`` columns). With ``Q`` (``n × r``) from the previous round:

    P = orthonormalize(M Q)     (reduced QR: P has orthonormal columns)
    Q = Mᵀ P

and ``P``, ``Q`` travel; the receiver rebuilds ``P Qᵀ = P Pᵀ M``, the projection of ``M``
on the span of ``P``. A matrix of rank at most ``r`` is rebuilt exactly (up to float
rounding) whenever ``M Q`` spans its columns. The new ``Q`` is kept by the encoding
side (:meth:`encode_with_state`, in the client's Context state) and starts the next
round's power iteration; the first round, or :meth:`encode` without state, draws ``Q``
from a standard normal using the encoder's ``rng``. The paper pairs it with error
feedback (``compressor.error_feedback: true`` in ``powersgd.yaml``).

Tensors with fewer than two dimensions, and matrices where ``r (m + n) >= m n`` (no
saving), are sent dense. Wire format per tensor: ``enc`` in its meta entry;
``"lowrank"``: ``name/P`` (``m r'``) and ``name/Q`` (``n r'``) float32 with
``r' = min(r, m, n)``, ``4 r' (m + n)`` bytes; ``"dense"``: ``name/values`` float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Encoded, RoundInfo, Tensors
from fedcomp.compressors.payload import part
from fedcomp.compressors.pertensor import PerTensor, TensorCode, as_flat32, check_finite
from fedcomp.compressors.settings import integer

_LOWRANK = ("P", "Q")
_DENSE = ("values",)


def matrix_dims(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(m, n)`` of the matrix view of a tensor (``m = shape[0]``)."""
    m = shape[0] if shape else 1
    n = math.prod(shape[1:]) if len(shape) > 1 else 1
    return m, n


class PowerSGD(PerTensor):
    """PowerSGD low-rank compression (see the module docstring).

    Parameters
    ----------
    rank
        ``r``, the rank of the factors, >= 1.
    """

    who = "powersgd"

    def __init__(self, rank: int = 4) -> None:
        self.rank = integer("rank", rank, 1)

    def label(self) -> str:
        return f"PowerSGD r={self.rank}"

    def effective_rank(self, shape: tuple[int, ...]) -> int:
        """``r'``, or 0 when the tensor is sent dense."""
        m, n = matrix_dims(shape)
        if len(shape) < 2 or m == 0 or n == 0 or self.rank * (m + n) >= m * n:
            return 0
        return min(self.rank, m, n)

    def parts_of(self, entry: Any) -> tuple[str, ...]:
        return _DENSE if isinstance(entry, dict) and entry.get("enc") == "dense" else _LOWRANK

    def _encode_matrix(
        self, name: str, array: np.ndarray, q: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[TensorCode, np.ndarray | None]:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        rank = self.effective_rank(array.shape)
        if not rank:
            return ({"values": flat.copy()}, {"enc": "dense"}), None
        m, n = matrix_dims(array.shape)
        matrix = flat.reshape(m, n)
        if q is None or q.shape != (n, rank):
            q = rng.standard_normal((n, rank), dtype=np.float32)
        p, _ = np.linalg.qr(matrix @ q)
        q = matrix.T @ p
        parts = {"P": p.astype(np.float32).reshape(-1), "Q": q.astype(np.float32).reshape(-1)}
        return (parts, {"enc": "lowrank"}), parts["Q"].reshape(n, rank)

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        return self._encode_matrix(name, array, None, rng)[0]

    def encode_with_state(
        self, tensors: Tensors, rng: np.random.Generator, state: Tensors, info: RoundInfo
    ) -> tuple[Encoded, Tensors]:
        """Encode with ``Q`` warm-started from ``state[name + "/Q"]``; return the new ``Q``s."""
        new_state: Tensors = {}

        def one(name: str, array: np.ndarray) -> TensorCode:
            code, q = self._encode_matrix(name, array, state.get(f"{name}/Q"), rng)
            if q is not None:
                new_state[f"{name}/Q"] = q
            return code

        return self.encode_each(tensors, one), new_state

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        if entry.get("enc") == "dense":
            return part(arrays, self.who, name, "values", np.float32, numel)
        rank = self.effective_rank(shape)
        if entry.get("enc") != "lowrank" or not rank:
            raise DecodeError(
                f"powersgd {name!r}: enc {entry.get('enc')!r} does not fit shape {list(shape)}"
            )
        m, n = matrix_dims(shape)
        p = part(arrays, self.who, name, "P", np.float32, m * rank).reshape(m, rank)
        q = part(arrays, self.who, name, "Q", np.float32, n * rank).reshape(n, rank)
        return (p @ q.T).reshape(-1)
