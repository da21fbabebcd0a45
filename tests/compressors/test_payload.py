"""The allocation budget and the checked reading of payload parts."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.payload import DECODE_SLACK, Budget, decode_limit, float_spec, part


def test_decode_limit_is_the_dense_size_plus_the_slack():
    model = {"w": np.zeros((10, 3), np.float32), "n": np.zeros(2, np.int64)}
    assert decode_limit(model) == 120 + 16 + DECODE_SLACK


def test_budget_refuses_what_exceeds_the_limit():
    budget = Budget(100)
    budget.take("t", "a", 60)
    with pytest.raises(DecodeError, match="'b'.*40 B left"):
        budget.take("t", "b", 41)
    Budget(None).take("t", "c", 1 << 60)  # no limit: the sender checking itself


def test_float_spec_charges_before_allocating():
    budget = Budget(1000)
    with pytest.raises(DecodeError, match="'w'"):
        float_spec("w", {"shape": [1 << 30, 1 << 30], "dtype": "<f4"}, "t", budget)
    with pytest.raises(DecodeError, match="not floating"):
        float_spec("w", {"shape": [2], "dtype": "<i4"}, "t", budget)
    assert float_spec("w", {"shape": [2, 3], "dtype": "<f4"}, "t", budget) == (
        (2, 3),
        np.dtype("<f4"),
        6,
    )
    assert budget.left == 1000 - 24


@pytest.mark.parametrize("dtype", [None, 5, "f4,f4", "f4,", ",", ",o1", "O", "U3", "(2,)f4", "M8", "float32"])
def test_only_plain_numeric_dtypes_are_accepted(dtype):
    with pytest.raises(DecodeError, match="dtype"):
        float_spec("w", {"shape": [2], "dtype": dtype}, "t", Budget(None))


def test_part_checks_presence_dtype_dimensions_and_size():
    arrays = {"w/a": np.zeros(3, np.float32), "w/b": np.zeros((1, 3), np.float32)}
    assert part(arrays, "t", "w", "a", np.float32, 3).size == 3
    for key, dtype, size, message in [
        ("c", np.float32, None, "missing"),
        ("a", np.uint8, None, "uint8"),
        ("b", np.float32, None, "1-D"),
        ("a", np.float32, 4, "expected 4"),
    ]:
        with pytest.raises(DecodeError, match=message):
            part(arrays, "t", "w", key, dtype, size)
