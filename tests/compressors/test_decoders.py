"""Every decoder against hostile payloads (Hypothesis): DecodeError only, bounded allocation.

For each compressor config (every ``conf/compressor/*.yaml``) and a few non-default
variants, a valid payload of a small model is mutated: arrays truncated, extended,
bit-flipped, replaced by random bytes of a random dtype, dropped or added; meta values
replaced by random JSON, keys deleted or added. Decoding must either succeed or raise
:class:`DecodeError`, never anything else, and its peak allocation (``tracemalloc``,
which sees numpy's buffers) must stay within twice the model's dense size plus 1 MiB,
whatever the header claims. The same holds for the packed layout: mutated packed bytes
go through :func:`~fedcomp.compressors.packing.unpack` and then the decoder.

The default suite runs a few examples per decoder; ``-m slow`` runs 1,000. Both draw the
same examples in every run, so CI's verdict does not depend on luck; set
``FEDCOMP_FUZZ=explore`` to draw new ones each run (how the bug behind
``test_a_header_naming_a_dtype_outside_the_wire_set_is_a_decode_error`` was found).
"""

from __future__ import annotations

import os
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedcomp.compressors.base import Compressor, DecodeError, Encoded
from fedcomp.compressors.build import build_channel
from fedcomp.compressors.cast import Cast
from fedcomp.compressors.channel import decode_checked
from fedcomp.compressors.eden import EDEN
from fedcomp.compressors.lossless import Lossless
from fedcomp.compressors.packing import ModelSpec, pack, unpack
from fedcomp.compressors.payload import decode_limit
from fedcomp.compressors.powersgd import PowerSGD
from fedcomp.compressors.qsgd import QSGD
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.signsgd import SignSGD
from fedcomp.compressors.terngrad import TernGrad
from fedcomp.compressors.topk import TopK
from tests.compressors.test_configs import NAMES, PYTHIA_CONFIGS, compose_compressor

QUICK = 12
THOROUGH = 1000
#: Peak allocation allowed beyond twice the dense size: work chunks, headers, Python objects.
CONSTANT = 1 << 20

SHAPES = {
    "conv1.weight": (4, 1, 3, 3),
    "conv1.bias": (4,),
    "fc1.weight": (40, 36),
    "fc1.bias": (40,),
    "fc2.weight": (10, 40),
    "fc2.bias": (10,),
}
PYTHIA_SHAPES = {
    "gpt_neox.embed_in.weight": (50, 8),
    "gpt_neox.layers.0.mlp.dense_h_to_4h.weight": (32, 8),
    "gpt_neox.final_layer_norm.weight": (8,),
    "lm_head.weight": (50, 8),
}
LORA_SHAPES = {
    "gpt_neox.layers.0.attention.query_key_value.weight": (48, 16),
    "gpt_neox.layers.0.attention.query_key_value.lora_A.default.weight": (8, 16),
    "gpt_neox.layers.0.attention.query_key_value.lora_B.default.weight": (48, 8),
    "gpt_neox.layers.0.mlp.dense_h_to_4h.lora_A.default.weight": (8, 16),
    "gpt_neox.layers.0.mlp.dense_h_to_4h.lora_B.default.weight": (64, 8),
    "lm_head.weight": (50, 16),
}
VARIANTS: dict[str, Compressor] = {
    "qsgd_elias": QSGD(levels=3, bucket_size=16, coding="elias"),
    "terngrad_base3": TernGrad(packing="base3"),
    "eden_small_blocks": EDEN(unbiased=False, block_size=16),
    "cast_bf16": Cast("bf16"),
    "signsgd_mean": SignSGD(aggregation="mean"),
    "powersgd_rank1": PowerSGD(rank=1),
    "topk_int32": TopK(density=0.1, index_encoding="int32"),
    "topk_bitmap": TopK(density=0.1, index_encoding="bitmap"),
    "topk_delta": TopK(density=0.1, index_encoding="delta"),
    "quant4_blocks": Quantize(bits=4, block_size=8, rounding="stochastic"),
    "lossless_zlib": Lossless(codec="zlib", level=6),
}
CASES = [*NAMES, *VARIANTS]
DTYPES = ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "?"]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(
        ["<f4", "<f8", "|u1", "<i4", "f4,f4", "O", "dense", "lowrank", "int32", "bitmap"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


def compressor_for(case: str) -> Compressor:
    if case in VARIANTS:
        return VARIANTS[case]
    return build_channel(compose_compressor(case)).compressor


def model_for(case: str) -> dict[str, np.ndarray]:
    if case.startswith("lora"):
        shapes = LORA_SHAPES
    else:
        shapes = PYTHIA_SHAPES if case in PYTHIA_CONFIGS else SHAPES
    g = np.random.default_rng(0)
    return {
        name: g.standard_normal(shape, dtype=np.float32) * 0.01 for name, shape in shapes.items()
    }


_CACHE: dict[str, tuple[Compressor, dict[str, np.ndarray], Encoded]] = {}


def setup(case: str) -> tuple[Compressor, dict[str, np.ndarray], Encoded]:
    if case not in _CACHE:
        compressor = compressor_for(case)
        model = model_for(case)
        _CACHE[case] = (compressor, model, compressor.encode(model, np.random.default_rng(1)))
    return _CACHE[case]


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON tree (dict keys and list indices)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*prefix, i))
    return found


def copy_json(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: copy_json(v) for k, v in node.items()}
    if isinstance(node, list):
        return [copy_json(v) for v in node]
    return node


def mutate_meta(data: st.DataObject, meta: dict) -> dict:
    meta = copy_json(meta)
    kind = data.draw(st.sampled_from(["replace", "delete", "insert", "whole"]))
    if kind == "whole":
        drawn = data.draw(JSON)
        return drawn if isinstance(drawn, dict) else {"tensors": drawn}
    path = data.draw(st.sampled_from(paths(meta)))
    if not path:
        return meta
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    if kind == "replace":
        parent[path[-1]] = data.draw(JSON)
    elif kind == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6))] = data.draw(JSON)
    return meta


def random_array(data: st.DataObject, max_bytes: int) -> np.ndarray:
    dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
    raw = data.draw(st.binary(max_size=max_bytes))
    raw = raw[: len(raw) // dtype.itemsize * dtype.itemsize]
    return np.frombuffer(raw, dtype=dtype)


def mutate_arrays(data: st.DataObject, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays = dict(arrays)
    kind = data.draw(
        st.sampled_from(["truncate", "extend", "flip", "random", "drop", "add", "reshape"])
    )
    keys = list(arrays)
    if kind == "add" or not keys:
        name = data.draw(st.sampled_from([*keys, *SHAPES, "x"])) + data.draw(
            st.sampled_from(["", "/values", "/idx", "/P", "/seed", "/signs"])
        )
        arrays[name] = random_array(data, 256)
        return arrays
    key = data.draw(st.sampled_from(keys))
    array = np.ascontiguousarray(arrays[key]).reshape(-1)
    if kind == "truncate":
        arrays[key] = array[: data.draw(st.integers(0, max(0, array.size - 1)))]
    elif kind == "extend":
        extra = np.frombuffer(
            data.draw(st.binary(min_size=array.itemsize, max_size=64 * array.itemsize)),
            dtype=np.uint8,
        )
        extra = extra[: extra.size // array.itemsize * array.itemsize].view(array.dtype)
        arrays[key] = np.concatenate((array, extra))
    elif kind == "flip":
        raw = array.view(np.uint8).copy()
        if raw.size:
            for bit in data.draw(
                st.lists(st.integers(0, raw.size * 8 - 1), min_size=1, max_size=8)
            ):
                raw[bit // 8] ^= np.uint8(1 << (bit % 8))
        arrays[key] = raw.view(array.dtype)
    elif kind == "random":
        arrays[key] = random_array(data, 2 * array.nbytes + 16)
    elif kind == "drop":
        del arrays[key]
    else:
        arrays[key] = array.reshape(1, -1)
    return arrays


def decode_bounded(compressor: Compressor, encoded: Encoded, limit: int) -> None:
    """Decode; only DecodeError may escape; peak allocation stays within the bound."""
    tracemalloc.start()
    try:
        compressor.decode(encoded)
    except DecodeError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 2 * limit + CONSTANT, f"decode allocated {peak} B for a {limit} B limit"


def check_mutated(case: str, data: st.DataObject) -> None:
    compressor, model, encoded = setup(case)
    arrays, meta = encoded.arrays, encoded.meta
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            meta = mutate_meta(data, meta)
        else:
            arrays = mutate_arrays(data, arrays)
    limit = decode_limit(model)
    decode_bounded(compressor, Encoded(arrays=arrays, meta=meta, limit=limit), limit)


def check_packed(case: str, data: st.DataObject) -> None:
    compressor, model, encoded = setup(case)
    spec = ModelSpec.of(model)
    blob = bytearray(pack(encoded, spec))
    kind = data.draw(st.sampled_from(["truncate", "extend", "flip", "random"]))
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "extend":
        blob += data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "flip":
        for bit in data.draw(st.lists(st.integers(0, len(blob) * 8 - 1), min_size=1, max_size=8)):
            blob[bit // 8] ^= 1 << (bit % 8)
    else:
        blob = bytearray(data.draw(st.binary(max_size=512)))
    try:
        received = unpack(bytes(blob), spec)
    except DecodeError:
        return
    limit = decode_limit(model)
    decode_bounded(
        compressor, Encoded(arrays=received.arrays, meta=received.meta, limit=limit), limit
    )


def fuzz(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=os.environ.get("FEDCOMP_FUZZ") != "explore",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("case", CASES)
@fuzz(QUICK)
@given(data=st.data())
def test_mutated_payloads_raise_decode_error_only(case, data):
    check_mutated(case, data)


@pytest.mark.parametrize("case", CASES)
@fuzz(QUICK)
@given(data=st.data())
def test_mutated_packed_bytes_raise_decode_error_only(case, data):
    check_packed(case, data)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@fuzz(THOROUGH)
@given(data=st.data())
def test_mutated_payloads_thoroughly(case, data):
    check_mutated(case, data)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@fuzz(THOROUGH)
@given(data=st.data())
def test_mutated_packed_bytes_thoroughly(case, data):
    check_packed(case, data)


@pytest.mark.parametrize("case", CASES)
def test_a_header_claiming_a_huge_tensor_is_refused_before_allocating(case):
    compressor, model, encoded = setup(case)
    meta = copy_json(encoded.meta)
    claims = [p for p in paths(meta) if p and p[-1] == "shape"]
    if not claims:
        pytest.skip("this payload's meta claims no shape")
    for path in claims:
        parent = meta
        for key in path[:-1]:
            parent = parent[key]
        parent["shape"] = [1 << 20, 1 << 20]
    limit = decode_limit(model)
    with pytest.raises(DecodeError):
        compressor.decode(Encoded(arrays=encoded.arrays, meta=meta, limit=limit))


@pytest.mark.parametrize("case", CASES)
def test_the_valid_payload_decodes_within_the_limit(case):
    compressor, model, encoded = setup(case)
    limit = decode_limit(model)
    decoded = compressor.decode(Encoded(arrays=encoded.arrays, meta=encoded.meta, limit=limit))
    sent = set(model) - compressor.frozen_names(list(model))
    assert sent <= set(decoded) <= set(model)


def test_a_zstd_frame_claiming_a_huge_size_is_refused_before_zstd_allocates():
    # Found by the fuzz test above: two flipped header bits made zstd's own decoder
    # trust a content size of ~2e18 bytes and raise MemoryError.
    lossless = Lossless()
    model = {"w": np.random.default_rng(0).integers(0, 5, size=1152).astype(np.uint8)}
    encoded = lossless.encode(model, np.random.default_rng(0))
    blob = encoded.arrays["w/z"].copy()
    for bit in (39, 61):
        blob[bit // 8] ^= np.uint8(1 << (bit % 8))
    with pytest.raises(DecodeError, match="claims"):
        lossless.decode(Encoded(arrays={"w/z": blob}, meta=encoded.meta, limit=decode_limit(model)))


def test_the_receiver_path_sets_the_limit():
    # decode_checked is how the strategy and the clients decode: it bounds decoding by
    # the model's dense size even when the payload arrives without a limit.
    compressor, model, encoded = setup("topk")
    meta = copy_json(encoded.meta)
    meta["tensors"]["fc1.weight"]["shape"] = [1 << 40]
    with pytest.raises(DecodeError, match="decode limit"):
        decode_checked(compressor, Encoded(arrays=encoded.arrays, meta=meta), model, list(model))
