"""The transform contract: ``encode(tensors) -> Encoded`` and ``decode(Encoded) -> tensors``.

A transform turns a dict of named float arrays (a model update: trained weights minus
the global weights the client received) into an :class:`Encoded` payload: named arrays
that are *exactly* what crosses the wire, plus a small JSON-able ``meta`` dict that
says how to decode them (encoding tags, shapes, dtypes). The receiver calls
:meth:`Transform.decode` to rebuild the tensors.

Byte accounting
---------------
``payload_bytes`` is ``sum(a.nbytes for a in arrays.values())`` — measured from the
arrays that are carried, never computed from a formula. ``meta`` travels in the
message's ConfigRecord; it is counted by ``wire_bytes`` (see :mod:`fedcomp.fl.wire`),
not by ``payload_bytes``.

Chaining
--------
Stages compose: the arrays one stage emits are the tensors the next stage encodes
(see :class:`fedcomp.transforms.chain.Chain`). A stage must therefore pass through
arrays it does not handle (e.g. quantization leaves integer index arrays untouched).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Tensors = dict[str, np.ndarray]


class DecodeError(ValueError):
    """A payload that cannot be decoded (wrong length, shape, tag or non-finite scale)."""


@dataclass
class Encoded:
    """What one transform stage emits.

    Parameters
    ----------
    arrays
        Named arrays that cross the wire. Their ``nbytes`` are the payload bytes.
    meta
        JSON-serializable decoding information (tags, shapes, dtypes, parameters).
    """

    arrays: Tensors
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def payload_bytes(self) -> int:
        """Sum of ``nbytes`` of the carried arrays."""
        return int(sum(a.nbytes for a in self.arrays.values()))


def array_spec(array: np.ndarray) -> dict[str, Any]:
    """JSON-able description of an array: ``{"shape": [...], "dtype": "<f4"}``."""
    return {"shape": [int(d) for d in array.shape], "dtype": array.dtype.str}


def spec_from_meta(name: str, entry: Any, who: str) -> tuple[tuple[int, ...], np.dtype]:
    """Read ``shape`` and ``dtype`` written by :func:`array_spec`.

    Parameters
    ----------
    name
        Tensor name, for the error message.
    entry
        The meta entry of that tensor.
    who
        Transform name, for the error message.

    Raises
    ------
    DecodeError
        If the entry is not a dict with a list of non-negative ints and a plain
        (non-object) numpy dtype.
    """
    if not isinstance(entry, dict):
        raise DecodeError(f"{who} {name!r}: meta entry is not a dict")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise DecodeError(f"{who} {name!r}: bad shape in meta: {shape!r}")
    try:
        dtype = np.dtype(entry.get("dtype"))
    except TypeError as err:
        raise DecodeError(f"{who} {name!r}: unknown dtype {entry.get('dtype')!r}") from err
    if dtype.hasobject or dtype.itemsize == 0:
        raise DecodeError(f"{who} {name!r}: unsupported dtype {dtype.str!r}")
    return tuple(shape), dtype


class Transform(ABC):
    """One encoding stage.

    Subclasses set ``lossy`` and implement :meth:`encode` / :meth:`decode`.
    ``encode`` must not modify its input. Randomness (stochastic rounding) comes only
    from the ``rng`` argument so one seed reproduces a run.
    """

    lossy: bool = False

    @abstractmethod
    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        """Encode named tensors into wire arrays plus decoding meta."""

    @abstractmethod
    def decode(self, encoded: Encoded) -> Tensors:
        """Rebuild the named tensors from an :class:`Encoded` payload.

        Raises
        ------
        DecodeError
            If the payload is malformed; the message names the tensor.
        """

    def frozen_names(self, names: list[str]) -> set[str]:
        """Names this stage never sends (only :class:`~fedcomp.transforms.freeze.Freeze`)."""
        return set()

    def describe(self) -> str:
        """One-line human description for logs."""
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"
