"""The packed layout: exact round trips, nothing the receiver knows is sent, malformed input refused."""

import json
import zlib

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError, Encoded
from fedcomp.compressors.packing import ModelSpec, pack, unpack
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.topk import TopK
from tests.helpers import MNIST_SHAPES


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in MNIST_SHAPES.items()}


def test_an_uncompressed_model_costs_two_bytes_over_its_data():
    model = _model()
    spec = ModelSpec.of(model)
    blob = pack(Encoded(model, {}), spec)
    assert len(blob) == spec.dense_bytes + 2 == sum(a.nbytes for a in model.values()) + 2
    back = unpack(blob, spec)
    assert back.meta == {} and list(back.arrays) == list(model)
    for name in model:
        np.testing.assert_array_equal(back.arrays[name], model[name])


@pytest.mark.parametrize("compressor", [TopK(density=0.01), Quantize(bits=4, block_size=64)], ids=["topk", "quant4"])
def test_compressed_payload_round_trips_bit_for_bit(compressor):
    model = _model()
    spec = ModelSpec.of(model)
    encoded = compressor.encode(model, np.random.default_rng(0))
    blob = pack(encoded, spec)
    back = unpack(blob, spec)
    assert back.meta == encoded.meta and list(back.arrays) == list(encoded.arrays)
    for name, array in encoded.arrays.items():
        assert back.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(back.arrays[name], array)
    data = sum(a.nbytes for a in encoded.arrays.values())
    header = len(blob) - data
    # names, shapes and dtypes come from the preset dictionary: the header is a fraction
    # of the JSON it stands for
    table = [[k, v.dtype.str, list(v.shape)] for k, v in encoded.arrays.items()]
    text = json.dumps({"m": encoded.meta, "a": table}, separators=(",", ":"))
    assert header < 0.25 * len(text)


def test_the_header_is_smaller_with_the_spec_than_without():
    model = _model()
    encoded = TopK(density=0.01).encode(model, np.random.default_rng(0))
    data = sum(a.nbytes for a in encoded.arrays.values())
    known = len(pack(encoded, ModelSpec.of(model))) - data
    unknown = len(pack(encoded, ModelSpec((), (), ()))) - data
    assert known < unknown


def test_wrong_spec_or_damaged_bytes_are_decode_errors():
    model = _model()
    spec = ModelSpec.of(model)
    raw = pack(Encoded(model, {}), spec)
    general = pack(TopK(density=0.05).encode(model, np.random.default_rng(0)), spec)
    other = ModelSpec.of({"x": np.zeros(3, np.float32)})
    cases = [
        b"", b"\x01", b"\x02\x00", b"\x01\x07", raw[:-1], raw + b"\x00", general[:-1], general + b"\x00",
        general[:3] + b"\xff" * 4 + general[7:], b"\x01\x01\xff\xff\xff\xff\xff",
    ]
    for blob in cases:
        with pytest.raises(DecodeError):
            unpack(blob, spec)
    with pytest.raises(DecodeError):
        unpack(raw, other)
    with pytest.raises(DecodeError):
        unpack(general, other)  # a different dictionary: the header does not inflate to the table


def test_a_header_that_claims_huge_arrays_allocates_nothing():
    spec = ModelSpec.of(_model())
    text = json.dumps({"m": {}, "a": [["w", "<f4", [10**12]]]}).encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, spec.zdict)
    header = deflate.compress(text) + deflate.flush()
    assert len(header) < 128  # one varint byte
    evil = bytes([1, 1, len(header)]) + header + bytes(16)
    with pytest.raises(DecodeError, match="needs"):
        unpack(evil, spec)


@pytest.mark.parametrize("dtype", [",o1", ",", "f4,", "(2,)f4", "f4,f4", "O", "U4", "V8", "<f16", "float32", 4])
def test_a_header_naming_a_dtype_outside_the_wire_set_is_a_decode_error(dtype):
    # Found by the fuzz test (tests/compressors/test_decoders.py): one flipped bit turned
    # "|u1" into ",o1" and np.dtype's comma-string parser raised SyntaxError.
    spec = ModelSpec.of(_model())
    text = json.dumps({"m": {}, "a": [["w", dtype, [1]]]}).encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, spec.zdict)
    header = deflate.compress(text) + deflate.flush()
    evil = bytes([1, 1, len(header)]) + header + bytes(4)
    with pytest.raises(DecodeError, match="is not one of"):
        unpack(evil, spec)
