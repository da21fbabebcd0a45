"""The compressor contract: ``encode(tensors) -> Encoded`` and ``decode(Encoded) -> tensors``.

A compressor turns a dict of named float arrays (a model update: trained weights minus
the global weights the client received) into an :class:`Encoded` payload: named arrays
that are *exactly* what crosses the wire, plus a small JSON-able ``meta`` dict that
says how to decode them (encoding tags, shapes, dtypes). The receiver calls
:meth:`Compressor.decode` to rebuild the tensors.

Byte accounting
---------------
``payload_bytes`` is ``sum(a.nbytes for a in arrays.values())`` — measured from the
arrays that are carried, never computed from a formula. ``meta`` travels in the
message's ConfigRecord; it is counted by ``wire_bytes`` (see :mod:`fedcomp.flower.measure`),
not by ``payload_bytes``.

Chaining
--------
Stages compose: the arrays one stage emits are the tensors the next stage encodes
(see :class:`fedcomp.compressors.chain.Chain`). A stage must therefore pass through
arrays it does not handle (e.g. quantization leaves integer index arrays untouched).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Tensors = dict[str, np.ndarray]


class DecodeError(ValueError):
    """A payload that cannot be decoded (wrong length, shape, tag or non-finite scale)."""


#: The dtypes a received payload may name, by their ``dtype.str`` (what senders write):
#: bool, signed/unsigned integers and floats in either byte order. Received strings are
#: looked up here, never parsed by ``np.dtype``, whose parser evaluates comma strings
#: and raises errors of many kinds on hostile input.
WIRE_DTYPES: dict[str, np.dtype] = {
    dtype.str: dtype
    for code in ("?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")
    for dtype in (np.dtype(code).newbyteorder("<"), np.dtype(code).newbyteorder(">"))
}


def wire_dtype(raw: Any, what: str) -> np.dtype:
    """The dtype a received payload names, from :data:`WIRE_DTYPES` only.

    Raises
    ------
    DecodeError
        If ``raw`` is not one of :data:`WIRE_DTYPES`' keys; the message names ``what``.
    """
    dtype = WIRE_DTYPES.get(raw) if isinstance(raw, str) else None
    if dtype is None:
        raise DecodeError(
            f"{what}: dtype {str(raw)[:20]!r} is not one of {', '.join(sorted(WIRE_DTYPES))}"
        )
    return dtype


@dataclass
class Encoded:
    """What one compressor stage emits.

    Parameters
    ----------
    arrays
        Named arrays that cross the wire. Their ``nbytes`` are the payload bytes.
    meta
        JSON-serializable decoding information (tags, shapes, dtypes, parameters).
    """

    arrays: Tensors
    meta: dict[str, Any] = field(default_factory=dict)
    #: Receiver side: the most bytes :meth:`Compressor.decode` may allocate for the
    #: tensors it rebuilds (the model's dense size plus a small constant), whatever
    #: ``meta`` claims; ``None`` trusts the payload (the sender checking its own).
    limit: int | None = None

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
        Compressor name, for the error message.

    Raises
    ------
    DecodeError
        If the entry is not a dict with a list of non-negative ints and a bool,
        integer or float numpy dtype.
    """
    if not isinstance(entry, dict):
        raise DecodeError(f"{who} {name!r}: meta entry is not a dict")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise DecodeError(f"{who} {name!r}: bad shape in meta: {shape!r}")
    dtype = wire_dtype(entry.get("dtype"), f"{who} {name!r}")
    return tuple(shape), dtype


def encode_floating(
    tensors: Tensors, encode_one: Callable[[str, np.ndarray], tuple[Tensors, dict[str, Any]]]
) -> tuple[Tensors, dict[str, Any]]:
    """Encode every floating tensor with ``encode_one``; pass the others through unchanged.

    ``encode_one(name, array)`` returns the tensor's parts (sent as ``name/<part>``, in
    order) and extra meta entries; the meta of ``name`` is its :func:`array_spec` plus those.

    Returns
    -------
    arrays, specs
        The arrays to carry and the per-tensor meta (``meta["tensors"]``).
    """
    arrays: Tensors = {}
    specs: dict[str, Any] = {}
    for name, array in tensors.items():
        if not np.issubdtype(array.dtype, np.floating):
            arrays[name] = array  # e.g. indices of an earlier stage
            continue
        parts, extra = encode_one(name, array)
        specs[name] = {**array_spec(array), **extra}
        for key, value in parts.items():
            arrays[f"{name}/{key}"] = value
    return arrays, specs


@dataclass(frozen=True)
class RoundInfo:
    """What a compressor may know about the round it encodes in.

    Attributes
    ----------
    server_round
        The round, from 1.
    num_rounds
        Rounds in the run (schedules such as DGC's warm-up read it).
    partition_id
        The client's partition, or -1 when the server encodes (downlink).
    """

    server_round: int
    num_rounds: int
    partition_id: int = -1


class Compressor(ABC):
    """One encoding stage: the pluggable unit of fedcomp (config group ``compressor``).

    Subclasses set ``lossy`` and implement :meth:`encode` / :meth:`decode`.
    ``encode`` must not modify its input. Randomness (stochastic rounding) comes only
    from the ``rng`` argument so one seed reproduces a run.

    Reports never recognise a compressor by its class name: each one declares its
    short :meth:`label`, the :meth:`params` that distinguish its settings, and whether
    it :attr:`is_identity` (the uncompressed baseline).
    """

    lossy: bool = False
    #: True only for the uncompressed baseline that reports compare against.
    is_identity: bool = False

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

    def encode_with_state(
        self, tensors: Tensors, rng: np.random.Generator, state: Tensors, info: RoundInfo
    ) -> tuple[Encoded, Tensors]:
        """Encode with a memory kept between rounds by the encoding side.

        A client keeps ``state`` in its Flower Context, the server keeps its own for
        the downlink. Compressors with memory (PowerSGD's warm-started ``Q``, DGC's
        momentum) override this; the default ignores ``state`` and returns it unchanged.
        """
        return self.encode(tensors, rng), state

    def aggregate(
        self, payloads: list[Encoded], weights: list[float], reference: Tensors, state: Tensors
    ) -> tuple[Tensors, Tensors] | None:
        """Aggregate the clients' payloads in the compressed domain, or ``None``.

        ``None`` (the default) means: decode each payload and take the weighted mean.
        Methods whose server combines payloads before decoding (FetchSGD sums sketches,
        signSGD takes a majority vote) return ``(update, new_state)``: the aggregated
        update for the tensors of ``reference`` and the server memory for the next round.
        ``weights`` sum to 1.
        """
        return None

    def frozen_names(self, names: list[str]) -> set[str]:
        """Names this stage never sends (only :class:`~fedcomp.compressors.freeze.Freeze`)."""
        return set()

    def adapters(self) -> dict[str, Any] | None:
        """Adapters to train instead of the model (only :class:`~fedcomp.compressors.lora.Lora`).

        ``None``, or the arguments the federated layer wraps the task's model with
        (:func:`fedcomp.tasks.adapters.add_adapters`) before it takes the round-0 state.
        """
        return None

    def params(self) -> dict[str, Any]:
        """The settings that tell two instances apart (JSON-able; public attributes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def label(self) -> str:
        """Short label for tables and figure legends (override for a readable one)."""
        return type(self).__name__.lower()

    def describe(self) -> str:
        """One-line description with every setting, for logs and ``summary.json``."""
        params = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({params})"
