"""Base class for compressors that encode each floating tensor on its own.

Most published compressors (casts, QSGD, TernGrad, sign methods, natural compression,
random-k, EDEN, STC, PowerSGD) map one tensor to a few named parts. :class:`PerTensor`
does the bookkeeping they share, so each method module holds only its mathematics:

- encode: every floating tensor ``name`` becomes the arrays ``name/<part>``; arrays
  that are not floating (indices of an earlier :class:`~fedcomp.compressors.chain.Chain`
  stage) pass through under their own names, in order;
  ``meta = {"tensors": {name: {"shape", "dtype", ...}}}`` (the layout
  :mod:`fedcomp.compressors.packing` compresses to almost nothing).
- decode: every claimed tensor is charged to the receiver's
  :class:`~fedcomp.compressors.payload.Budget` before anything is allocated, each part
  is checked by :func:`~fedcomp.compressors.payload.part`, and the method's
  ``decode_tensor`` rebuilds the flat float32 values.

Method parameters (levels, rank, ...) are read from the instance, never from ``meta``:
both sides build the compressor from the same config, so a hostile header cannot
change them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, encode_floating
from fedcomp.compressors.payload import Budget, float_spec, tensor_specs

#: Entries per decode chunk: temporaries stay small, so decoding a tensor allocates little
#: beyond its output. A multiple of 8, so packed codes of a chunk start on a byte.
CHUNK = 1 << 14

#: What encoding one tensor yields: its parts and extra fields of its meta entry.
TensorCode = tuple[Tensors, dict[str, Any]]


class PerTensor(Compressor):
    """A compressor applied to each floating tensor independently (see the module doc).

    Subclasses set :attr:`who` and :attr:`parts` and implement :meth:`encode_tensor`
    and :meth:`decode_tensor`.
    """

    lossy = True
    #: Name used in error messages.
    who = "compressor"
    #: The parts each encoded tensor is sent as (``name/<part>``).
    parts: tuple[str, ...] = ()

    @abstractmethod
    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        """The parts of one floating tensor and extra fields for its meta entry."""

    @abstractmethod
    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        """The flat float32 values of tensor ``name`` (``numel`` of them) from its parts.

        ``arrays`` is the whole payload; read parts with
        :func:`~fedcomp.compressors.payload.part`. Raise ``DecodeError`` naming the tensor.
        """

    def parts_of(self, entry: Any) -> tuple[str, ...]:
        """The parts a tensor with this meta entry was sent as (default: :attr:`parts`)."""
        return self.parts

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        return self.encode_each(tensors, lambda name, array: self.encode_tensor(name, array, rng))

    def encode_each(
        self, tensors: Tensors, encode_one: Callable[[str, np.ndarray], TensorCode]
    ) -> Encoded:
        """Encode every floating tensor with ``encode_one``; pass the others through."""
        arrays, specs = encode_floating(tensors, encode_one)
        return Encoded(arrays=arrays, meta={"tensors": specs})

    def decode(self, encoded: Encoded) -> Tensors:
        specs = tensor_specs(encoded.meta, self.who)
        budget = Budget.of(encoded)
        owner = {
            f"{name}/{key}": name for name, entry in specs.items() for key in self.parts_of(entry)
        }
        out: Tensors = {}
        for key, array in encoded.arrays.items():
            name = owner.get(key)
            if name is None:
                if key in specs:
                    raise DecodeError(f"{self.who} {key!r}: sent both raw and encoded")
                out[key] = array  # passed through at encode time
            elif name not in out:
                entry = specs[name]
                shape, dtype, numel = float_spec(name, entry, self.who, budget)
                flat = self.decode_tensor(name, encoded.arrays, shape, numel, entry)
                out[name] = flat.astype(dtype, copy=False).reshape(shape)
        for name, entry in specs.items():
            if name not in out:
                key = self.parts_of(entry)[0]
                raise DecodeError(f"{self.who} {name!r}: missing array '{name}/{key}'")
        return out


def chunks(numel: int, step: int = CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of at most ``step`` entries covering ``numel``."""
    for start in range(0, numel, step):
        yield start, min(numel, start + step)


def as_flat32(array: np.ndarray) -> np.ndarray:
    """``array`` flattened as float32 (no copy when it already is)."""
    return np.asarray(array, dtype=np.float32).reshape(-1)


def check_finite(name: str, flat: np.ndarray, who: str) -> None:
    """Raise ``ValueError`` if an update tensor holds NaN or infinity (nothing to encode)."""
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{who} {name!r}: the update holds NaN or infinity; cannot encode it")


def seed_array(rng: np.random.Generator) -> np.ndarray:
    """One fresh 64-bit seed drawn from ``rng``, as the 8-byte array that travels."""
    return rng.integers(0, np.iinfo(np.uint64).max, size=1, dtype=np.uint64, endpoint=True)


def seeded(seed: np.ndarray) -> np.random.Generator:
    """The generator both sides derive from a travelling seed."""
    return np.random.default_rng(int(seed[0]))
