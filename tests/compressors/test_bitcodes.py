"""Bit-level codes: fixed-width packing, Rice and Elias gamma, by hand and round trip."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.bitcodes import (
    gamma_decode,
    gamma_encode,
    pack_codes,
    packed_size,
    rice_decode,
    rice_encode,
    unpack_codes,
)


def bits_of(stream: np.ndarray) -> str:
    return "".join(str(b) for b in np.unpackbits(stream, bitorder="little"))


def test_fixed_width_codes_by_hand():
    # codes 5, 1 at 3 bits, LSB first: 101 100 -> bits 1,0,1,1,0,0 then padding
    packed = pack_codes(np.array([5, 1]), 3)
    assert bits_of(packed) == "10110000"
    assert packed.size == packed_size(2, 3) == 1


@pytest.mark.parametrize("width", [1, 2, 3, 5, 9, 16])
def test_fixed_width_round_trip(width):
    codes = np.random.default_rng(width).integers(0, 1 << width, size=70_001)
    packed = pack_codes(codes, width)
    assert packed.size == (codes.size * width + 7) // 8
    np.testing.assert_array_equal(unpack_codes(packed, width, codes.size), codes)


def test_rice_by_hand():
    # b = 2: 5 = q 1, r 01 -> "1" "0" then r LSB first "10"; 0 -> "0" "00"
    stream = rice_encode(np.array([5, 0]), 2)
    assert bits_of(stream) == "1010" + "000" + "0"
    np.testing.assert_array_equal(rice_decode(stream, 2, 2, "t", "x"), [5, 0])


@pytest.mark.parametrize("b", [0, 1, 4, 7])
def test_rice_round_trip_and_length(b):
    values = np.random.default_rng(b).geometric(0.02, size=3000) - 1
    stream = rice_encode(values, b)
    assert stream.size == (int(((values >> b) + 1 + b).sum()) + 7) // 8
    np.testing.assert_array_equal(rice_decode(stream, b, values.size, "t", "x"), values)


def test_gamma_by_hand():
    # 1 -> "1"; 4 = 100b -> "00" "100"; 3 = 11b -> "0" "11"
    stream = gamma_encode(np.array([1, 4, 3]))
    assert bits_of(stream) == "1" + "00100" + "011" + "0" * 7
    np.testing.assert_array_equal(gamma_decode(stream, 3, "t", "x"), [1, 4, 3])


def test_gamma_round_trip_at_powers_of_two():
    values = np.array([*(1 << k for k in range(32)), *((1 << k) - 1 for k in range(1, 33))])
    stream = gamma_encode(values)
    sizes = np.array([int(v).bit_length() - 1 for v in values])
    assert stream.size == (int((2 * sizes + 1).sum()) + 7) // 8
    np.testing.assert_array_equal(gamma_decode(stream, values.size, "t", "x"), values)


def test_streams_that_end_early_or_run_long_are_refused():
    stream = rice_encode(np.array([3, 9, 1]), 1)
    with pytest.raises(DecodeError, match="'x'"):
        rice_decode(stream, 1, 10, "t", "x")
    with pytest.raises(DecodeError, match="after its last code"):
        rice_decode(np.concatenate((stream, [255])).astype(np.uint8), 1, 3, "t", "x")
    with pytest.raises(DecodeError):
        gamma_decode(np.zeros(8, dtype=np.uint8), 1, "t", "x")
