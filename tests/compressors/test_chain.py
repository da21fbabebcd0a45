"""Chains of the real stages: names, shapes and payload bytes by hand."""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.chain import Chain
from fedcomp.compressors.freeze import Freeze
from fedcomp.compressors.lossless import Lossless
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.topk import TopK
from tests.helpers import MNIST_SHAPES


def update(seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {n: g.standard_normal(s, dtype=np.float32) * 0.01 for n, s in MNIST_SHAPES.items()}


def test_freeze_topk_quant8_round_trip_and_payload_by_hand():
    chain = Chain(
        [
            Freeze(["conv*"]),
            TopK(density=0.01, selection="exact", index_encoding="int32"),
            Quantize(bits=8),
        ]
    )
    x = update()
    enc = chain.encode(x, np.random.default_rng(0))
    sent = [n for n in MNIST_SHAPES if not n.startswith("conv")]
    expected_names = set()
    expected_bytes = 0
    for name in sent:
        k = max(1, round(0.01 * int(np.prod(MNIST_SHAPES[name]))))
        expected_names |= {f"{name}/idx", f"{name}/values/q", f"{name}/values/scale", f"{name}/values/min"}
        # k uint8 codes + one float32 scale + one float32 min + k int32 positions
        expected_bytes += k * 1 + 4 + 4 + k * 4
        assert enc.arrays[f"{name}/idx"].dtype == np.int32  # quantization left it alone
        assert enc.arrays[f"{name}/values/q"].size == k
    assert set(enc.arrays) == expected_names
    assert enc.payload_bytes == expected_bytes == (2048 + 1 + 13 + 1) * 5 + 4 * 8

    dec = chain.decode(enc)
    assert list(dec) == list(MNIST_SHAPES)
    for name, a in x.items():
        assert dec[name].shape == a.shape and dec[name].dtype == np.float32
        if name.startswith("conv"):
            assert not dec[name].any()
    kept = dec["fc1.weight"] != 0
    assert kept.sum() == 2048
    step = float(enc.arrays["fc1.weight/values/scale"][0])
    assert np.abs(dec["fc1.weight"][kept] - x["fc1.weight"][kept]).max() <= 0.5 * step + 1e-7
    assert chain.frozen_names(list(MNIST_SHAPES)) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}
    assert chain.lossy


def test_lossless_stage_changes_bytes_not_values():
    x = update(1)
    base = Chain([TopK(density=0.05), Quantize(bits=4, block_size=64)])
    zipped = Chain([TopK(density=0.05), Quantize(bits=4, block_size=64), Lossless(codec="zstd")])
    a = base.encode(x, np.random.default_rng(3))
    b = zipped.encode(x, np.random.default_rng(3))
    assert set(b.arrays) == {f"{n}/z" for n in a.arrays}
    da, db = base.decode(a), zipped.decode(b)
    for name in x:
        np.testing.assert_array_equal(da[name], db[name])
