"""Bit-level codes: fixed-width packing, Golomb-Rice and Elias-gamma streams.

All streams are little-endian within a byte (bit ``i`` of the stream is bit ``i % 8``
of byte ``i // 8``, ``np.packbits(..., bitorder="little")``) and padded with zero
bits to a whole byte.

- :func:`pack_codes` / :func:`unpack_codes`: unsigned codes of a fixed ``width``
  (1..16 bits) back to back, ``ceil(count * width / 8)`` bytes; code ``i`` holds its
  bits LSB first. Worked through in chunks, so the temporaries stay small.
- :func:`rice_encode` / :func:`rice_decode`: Golomb coding with a power-of-two
  parameter ``M = 2**b`` (Rice coding): ``v >= 0`` is ``q = v >> b`` one-bits, a
  zero-bit, then the ``b`` low bits of ``v`` LSB first; ``q + 1 + b`` bits.
- :func:`gamma_encode` / :func:`gamma_decode`: Elias gamma of ``v >= 1``: ``N =
  floor(log2 v)`` zero-bits, then the ``N + 1`` bits of ``v`` MSB first (the first of
  them a one); ``2N + 1`` bits.

Decoders never trust the stream: a stream that ends early or has bits left over raises
:class:`DecodeError` naming the tensor. They allocate about 5 bytes per stream bit, so
callers first check that a stream is no longer than its codes can be.
"""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.base import DecodeError

#: Codes per work chunk (a multiple of 8 so every chunk starts on a byte boundary).
_CHUNK = 1 << 16
MAX_WIDTH = 16
#: Largest value Elias gamma codes here (fits the 32-bit remainders).
MAX_GAMMA = (1 << 32) - 1


def packed_size(count: int, width: int) -> int:
    """Bytes of ``count`` codes of ``width`` bits."""
    return (count * width + 7) // 8


def pack_codes(codes: np.ndarray, width: int) -> np.ndarray:
    """Pack unsigned ``codes`` (each ``< 2**width``) into ``ceil(n*width/8)`` bytes."""
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"code width must be in [1, {MAX_WIDTH}], got {width}")
    codes = np.asarray(codes).reshape(-1)
    if width == 1:
        return np.packbits(codes.astype(np.uint8), bitorder="little")
    out = np.empty(packed_size(codes.size, width), dtype=np.uint8)
    shifts = np.arange(width, dtype=np.uint16)
    for start in range(0, codes.size, _CHUNK):
        chunk = codes[start : start + _CHUNK].astype(np.uint16)
        bits = ((chunk[:, None] >> shifts) & 1).astype(np.uint8)
        packed = np.packbits(bits.reshape(-1), bitorder="little")
        first = start * width // 8
        out[first : first + packed.size] = packed
    return out


def unpack_codes(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """The ``count`` uint16 codes of :func:`pack_codes` (the caller checks the size)."""
    if width == 1:
        return np.unpackbits(packed, count=count, bitorder="little").astype(np.uint16)
    out = np.zeros(count, dtype=np.uint16)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        first = start * width // 8
        raw = packed[first : first + packed_size(n, width)]
        bits = np.unpackbits(raw, count=n * width, bitorder="little").reshape(n, width)
        codes = out[start : start + n]
        for j in range(width):
            codes |= bits[:, j].astype(np.uint16) << np.uint16(j)
    return out


def _bit_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``starts[i] + j`` for every ``j < lengths[i]``, concatenated."""
    total = int(lengths.sum())
    first = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return first + np.arange(total, dtype=np.int64)


def rice_encode(values: np.ndarray, b: int) -> np.ndarray:
    """Rice-code non-negative integers with parameter ``2**b`` (see the module doc)."""
    values = np.asarray(values, dtype=np.int64)
    q = values >> b
    lengths = q + 1 + b
    starts = np.cumsum(lengths) - lengths
    bits = np.zeros(int(lengths.sum()), dtype=np.uint8)
    bits[_bit_positions(starts, q)] = 1
    if b:
        low = (values[:, None] >> np.arange(b)) & 1
        bits[(starts + q + 1)[:, None] + np.arange(b)] = low
    return np.packbits(bits, bitorder="little")


def rice_decode(stream: np.ndarray, b: int, count: int, who: str, name: str) -> np.ndarray:
    """The ``count`` integers of a Rice stream (int64).

    Raises
    ------
    DecodeError
        If the stream ends inside a code or holds more than padding after the last one.
    """
    bits = np.unpackbits(stream, bitorder="little")
    next_zero = _next_index(bits, 0)
    ends = np.empty(count, dtype=np.int64)  # position of each code's terminating zero
    position = 0
    for i in range(count):
        end = next_zero.item(position) if position < bits.size else bits.size
        if end + b >= bits.size:
            raise DecodeError(f"{who} {name!r}: Golomb stream ends inside code {i} of {count}")
        ends[i] = end
        position = end + 1 + b
    _check_tail(bits, position, who, name)
    starts = np.concatenate(([0], ends[:-1] + 1 + b)) if count else ends
    values = (ends - starts) << b
    if b:
        low = bits[(ends + 1)[:, None] + np.arange(b)].astype(np.int64)
        values |= (low << np.arange(b)).sum(axis=1)
    return values


def gamma_encode(values: np.ndarray) -> np.ndarray:
    """Elias-gamma-code integers in ``[1, MAX_GAMMA]`` (see the module doc)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 1 or values.max() > MAX_GAMMA):
        raise ValueError(f"Elias gamma codes integers in [1, {MAX_GAMMA}]")
    n = np.floor(np.log2(np.maximum(values, 1))).astype(np.int64)
    n += (values >> np.minimum(n + 1, 62)) > 0  # float log2 can round down at 2**k - 1
    n -= (values >> n) == 0
    lengths = 2 * n + 1
    starts = np.cumsum(lengths) - lengths
    bits = np.zeros(int(lengths.sum()), dtype=np.uint8)
    # value bits MSB first at starts + n + j, j = 0..n
    offsets = _bit_positions(starts + n, n + 1)
    owner = np.repeat(np.arange(values.size), n + 1)
    shift = np.repeat(n, n + 1) - (offsets - np.repeat(starts + n, n + 1))
    bits[offsets] = (values[owner] >> shift) & 1
    return np.packbits(bits, bitorder="little")


def gamma_decode(stream: np.ndarray, count: int, who: str, name: str) -> np.ndarray:
    """The ``count`` integers of an Elias-gamma stream (int64).

    Raises
    ------
    DecodeError
        If the stream ends inside a code, a code is longer than 32 value bits, or more
        than padding follows the last code.
    """
    bits = np.unpackbits(stream, bitorder="little")
    next_one = _next_index(bits, 1)
    leads = np.empty(count, dtype=np.int64)  # position of each code's leading one
    sizes = np.empty(count, dtype=np.int64)  # N of each code
    position = 0
    for i in range(count):
        lead = next_one.item(position) if position < bits.size else bits.size
        n = lead - position
        if lead == bits.size or n > 31 or lead + n >= bits.size:
            raise DecodeError(
                f"{who} {name!r}: Elias code {i} of {count} is malformed or runs past the end"
            )
        leads[i], sizes[i] = lead, n
        position = lead + n + 1
    _check_tail(bits, position, who, name)
    values = np.zeros(count, dtype=np.int64)
    for j in range(int(sizes.max()) + 1 if count else 0):  # at most 32 vectorised passes
        live = sizes >= j
        values[live] = (values[live] << 1) | bits[leads[live] + j]
    return values


def _next_index(bits: np.ndarray, target: int) -> np.ndarray:
    """For each position, the first position at or after it holding ``target`` (or the length)."""
    index = np.int32 if bits.size < np.iinfo(np.int32).max else np.int64
    where = np.where(bits == target, np.arange(bits.size, dtype=index), index(bits.size))
    return np.minimum.accumulate(where[::-1])[::-1]


def _check_tail(bits: np.ndarray, position: int, who: str, name: str) -> None:
    """After the last code only zero padding to the byte boundary may follow."""
    if bits.size - position >= 8 or bits[position:].any():
        raise DecodeError(
            f"{who} {name!r}: stream has {bits.size - position} bits after its last code"
        )
