"""Reading a received payload without trusting it: checked parts and an allocation budget.

Every decoder reads bytes a remote party chose. The helpers here turn each way a
payload can be malformed into a :class:`~fedcomp.compressors.base.DecodeError` that
names the tensor, and bound what decoding allocates: :class:`Budget` is charged with
the bytes of every tensor a decoder rebuilds *before* it allocates them, so a header
that claims a huge shape is refused instead of exhausting memory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Encoded, Tensors, spec_from_meta

#: Bytes a receiver allows beyond the model's dense size (rounding, tiny extra arrays).
DECODE_SLACK = 4096


def decode_limit(reference: Tensors) -> int:
    """The receiver's bound for decoding an update of the model ``reference``.

    Its dense size (``sum(nbytes)``, frozen tensors included: a decoder may rebuild
    them as zeros) plus :data:`DECODE_SLACK`.
    """
    return int(sum(np.asarray(a).nbytes for a in reference.values())) + DECODE_SLACK


class Budget:
    """Bytes a decoder may still allocate for the tensors it rebuilds.

    Parameters
    ----------
    limit
        :attr:`Encoded.limit`: the receiver's bound, or ``None`` for no bound.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.left = limit

    @classmethod
    def of(cls, encoded: Encoded) -> Budget:
        """The budget for decoding ``encoded``."""
        return cls(encoded.limit)

    def take(self, who: str, name: str, nbytes: int) -> None:
        """Charge ``nbytes`` for tensor ``name``.

        Raises
        ------
        DecodeError
            If the charge exceeds what is left of the limit.
        """
        if self.left is None:
            return
        if nbytes > self.left:
            raise DecodeError(
                f"{who} {name!r}: needs {nbytes} B, more than the {self.left} B left of the "
                f"receiver's {self.limit} B decode limit"
            )
        self.left -= nbytes


def tensor_specs(meta: Any, who: str) -> dict[str, Any]:
    """``meta["tensors"]``: the per-tensor entries of a payload.

    Raises
    ------
    DecodeError
        If ``meta`` is not a dict holding a ``tensors`` dict.
    """
    specs = meta.get("tensors") if isinstance(meta, dict) else None
    if not isinstance(specs, dict):
        raise DecodeError(f"{who}: meta has no 'tensors' dict")
    return specs


def float_spec(
    name: str, entry: Any, who: str, budget: Budget
) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and numel of a rebuilt floating tensor, charged to ``budget``.

    The charge is ``numel × max(4, itemsize)``: decoders compute in float32.

    Raises
    ------
    DecodeError
        If the entry is malformed, the dtype is not floating, or the budget is exceeded.
    """
    shape, dtype = spec_from_meta(name, entry, who)
    if dtype.kind != "f":
        raise DecodeError(f"{who} {name!r}: dtype {dtype.str} is not floating")
    numel = math.prod(shape)
    budget.take(who, name, numel * max(4, dtype.itemsize))
    return shape, dtype, numel


def part(
    arrays: Tensors, who: str, name: str, key: str, dtype: type | np.dtype, size: int | None = None
) -> np.ndarray:
    """The 1-D array ``name/key`` of ``arrays``, checked for dtype and (optionally) size.

    Raises
    ------
    DecodeError
        If the array is missing, not 1-D, of another dtype or of another size.
    """
    array = arrays.get(f"{name}/{key}")
    if array is None:
        raise DecodeError(f"{who} {name!r}: missing array '{name}/{key}'")
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype != np.dtype(dtype):
        got = f"{array.dtype}{list(array.shape)}" if isinstance(array, np.ndarray) else type(array)
        raise DecodeError(
            f"{who} {name!r}: '{name}/{key}' must be a 1-D {np.dtype(dtype)} array, got {got}"
        )
    if size is not None and array.size != size:
        raise DecodeError(
            f"{who} {name!r}: '{name}/{key}' has {array.size} entries, expected {size}"
        )
    return array


def finite_scalars(array: np.ndarray, who: str, name: str, key: str) -> np.ndarray:
    """``array`` as float32 after checking it holds only finite values (scales, norms).

    Raises
    ------
    DecodeError
        If a value is NaN or infinite.
    """
    if not np.all(np.isfinite(array)):
        raise DecodeError(f"{who} {name!r}: '{name}/{key}' holds non-finite values")
    return array.astype(np.float32, copy=False)


def int_entry(entry: Any, key: str, who: str, name: str, low: int, high: int) -> int:
    """An integer field of a tensor's meta entry, checked to lie in ``[low, high]``.

    Raises
    ------
    DecodeError
        If the field is missing, not an int, or out of range.
    """
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DecodeError(
            f"{who} {name!r}: meta {key!r} must be an int in [{low}, {high}], got {value!r}"
        )
    return value
