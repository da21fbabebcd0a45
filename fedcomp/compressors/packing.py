"""The packed layout: a whole :class:`Encoded` payload as one contiguous byte string.

A model-carrying message carries one byte string per payload instead of one Flower
array per encoded component (each of which costs about 590 B of framing). Nothing the
receiver already knows is sent: the model's tensor names, shapes and dtypes are the
:class:`ModelSpec` both sides build from the same config.

Format (version 1)
------------------
``byte 0``
    The format version, ``1``.
``byte 1``
    The kind: ``0`` *model* — the arrays are exactly the spec's tensors, raw, in spec
    order (the uncompressed model or update): no header at all; ``1`` *general* — a
    header follows.
*general* only
    An unsigned LEB128 varint ``H``, then ``H`` bytes of raw DEFLATE (RFC 1951) of the
    UTF-8 JSON header ``{"m": meta, "a": [[name, dtype, shape], ...]}`` compressed with a
    preset dictionary built from the model spec (:attr:`ModelSpec.zdict`): tensor names,
    shapes and dtypes cost a back-reference of a few bits, not their text.
then
    The arrays' raw bytes (C order), concatenated in table order.

Decoding never trusts the sender: every length is checked against the bytes received,
the header's inflated size is bounded, and any malformed input raises
:class:`~fedcomp.compressors.base.DecodeError`. Arrays are read-only views of the
received bytes, so decoding allocates nothing in proportion to what a header claims.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fedcomp.compressors.base import DecodeError, Encoded, Tensors, wire_dtype

FORMAT_VERSION = 1
KIND_MODEL = 0
KIND_GENERAL = 1
#: Inflated header bytes allowed: a fixed part plus a share per model tensor.
HEADER_BASE_LIMIT = 64 * 1024
HEADER_PER_TENSOR_LIMIT = 4 * 1024


@dataclass(frozen=True)
class ModelSpec:
    """Names, shapes and dtypes of the tensors a message stands for, in order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @classmethod
    def of(cls, tensors: Tensors) -> ModelSpec:
        """The spec of ``tensors`` (name order kept)."""
        return cls(
            names=tuple(tensors),
            shapes=tuple(tuple(int(d) for d in a.shape) for a in tensors.values()),
            dtypes=tuple(np.asarray(a).dtype.str for a in tensors.values()),
        )

    @property
    def dense_bytes(self) -> int:
        """Bytes of the tensors uncompressed: ``sum(numel × itemsize)``."""
        return sum(
            math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in zip(self.shapes, self.dtypes)
        )

    @cached_property
    def zdict(self) -> bytes:
        """The DEFLATE preset dictionary: the spec as the header and compressors write it."""
        table = [[n, d, list(s)] for n, d, s in zip(self.names, self.dtypes, self.shapes)]
        parts = [_json(table)]
        for name, dtype, shape in zip(self.names, self.dtypes, self.shapes):
            parts.append(_json({name: {"shape": list(shape), "dtype": dtype}})[1:-2])
        return ",".join(parts).encode("utf-8")

    def is_model(self, arrays: Tensors) -> bool:
        """Whether ``arrays`` are exactly the spec's tensors, in order, with its shapes and dtypes."""
        if tuple(arrays) != self.names:
            return False
        return all(
            a.shape == s and a.dtype.str == d for a, s, d in zip(arrays.values(), self.shapes, self.dtypes)
        )


def pack(encoded: Encoded, spec: ModelSpec) -> bytes:
    """The packed byte string of ``encoded`` (see the module docstring)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in encoded.arrays.items()}
    if not encoded.meta and spec.is_model(arrays):
        return bytes([FORMAT_VERSION, KIND_MODEL]) + b"".join(a.tobytes() for a in arrays.values())
    table = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    text = _json({"m": encoded.meta, "a": table}).encode("utf-8")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, spec.zdict)
    header = compressor.compress(text) + compressor.flush()
    parts = [bytes([FORMAT_VERSION, KIND_GENERAL]), _varint(len(header)), header]
    parts += [a.tobytes() for a in arrays.values()]
    return b"".join(parts)


def unpack(data: bytes, spec: ModelSpec) -> Encoded:
    """The :class:`Encoded` payload of a packed byte string.

    Raises
    ------
    DecodeError
        On any malformed input: unknown version or kind, a header that does not
        inflate or parse or is too large, an array table whose sizes disagree with the
        bytes received.
    """
    view = memoryview(data)
    if len(view) < 2 or view[0] != FORMAT_VERSION:
        raise DecodeError(f"packed payload: unknown format (first bytes {bytes(view[:2])!r})")
    if view[1] == KIND_MODEL:
        return Encoded(arrays=_model_arrays(view[2:], spec), meta={})
    if view[1] != KIND_GENERAL:
        raise DecodeError(f"packed payload: unknown kind {view[1]}")
    length, offset = _read_varint(view, 2)
    if offset + length > len(view):
        raise DecodeError(f"packed payload: header of {length} B exceeds the {len(view)} B received")
    meta, table = _read_header(bytes(view[offset : offset + length]), spec)
    return Encoded(arrays=_arrays(view[offset + length :], table), meta=meta)


def _model_arrays(body: memoryview, spec: ModelSpec) -> Tensors:
    if len(body) != spec.dense_bytes:
        raise DecodeError(f"packed model: {len(body)} B received, the model needs {spec.dense_bytes}")
    table = [(n, np.dtype(d), s) for n, d, s in zip(spec.names, spec.dtypes, spec.shapes)]
    return _arrays(body, table)


def _read_header(blob: bytes, spec: ModelSpec) -> tuple[dict, list[tuple[str, np.dtype, tuple[int, ...]]]]:
    limit = HEADER_BASE_LIMIT + HEADER_PER_TENSOR_LIMIT * len(spec.names)
    inflater = zlib.decompressobj(-15, zdict=spec.zdict)
    try:
        text = inflater.decompress(blob, limit)
    except zlib.error as err:
        raise DecodeError(f"packed header does not inflate: {err}") from None
    if inflater.unconsumed_tail:
        raise DecodeError(f"packed header inflates to more than {limit} B")
    if not inflater.eof or inflater.unused_data:
        raise DecodeError("packed header: truncated or trailing DEFLATE data")
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DecodeError(f"packed header is not JSON: {err}") from None
    if not isinstance(header, dict) or not isinstance(header.get("m"), dict) or not isinstance(header.get("a"), list):
        raise DecodeError("packed header: expected {'m': {...}, 'a': [...]}")
    table = []
    for entry in header["a"]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise DecodeError(f"packed header: bad array entry {str(entry)[:80]}")
        name, dtype_str, shape = entry
        dtype = wire_dtype(dtype_str, f"packed array {name!r}")
        if not (
            isinstance(shape, list)
            and len(shape) <= 32
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise DecodeError(f"packed array {name!r}: bad shape {str(shape)[:80]}")
        table.append((name, dtype, tuple(shape)))
    if len({name for name, _, _ in table}) != len(table):
        raise DecodeError("packed header: duplicate array names")
    return header["m"], table


def _arrays(body: memoryview, table: list[tuple[str, np.dtype, tuple[int, ...]]]) -> Tensors:
    sizes = [math.prod(shape) * dtype.itemsize for _, dtype, shape in table]
    if sum(sizes) != len(body):
        raise DecodeError(f"packed payload: the array table needs {sum(sizes)} B, {len(body)} B received")
    arrays: Tensors = {}
    offset = 0
    for (name, dtype, shape), size in zip(table, sizes):
        count = size // dtype.itemsize
        arrays[name] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += size
    return arrays


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(view: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    for position in range(offset, min(len(view), offset + 5)):
        byte = view[position]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position + 1
        shift += 7
    raise DecodeError("packed payload: truncated or overlong header length")


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
