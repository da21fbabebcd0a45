"""Error feedback (through the uplink channel): nothing is lost, only delayed."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import RoundInfo
from fedcomp.compressors.chain import Chain
from fedcomp.compressors.channel import Channel, encode_update
from fedcomp.compressors.memory import ErrorFeedback
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.topk import TopK

SHAPES = {"conv1.weight": (8, 1, 3, 3), "conv1.bias": (8,), "fc1.weight": (32, 200), "fc1.bias": (32,)}


def updates(rounds: int) -> list[dict[str, np.ndarray]]:
    g = np.random.default_rng(42)
    return [
        {n: g.standard_normal(s, dtype=np.float32) * 0.01 for n, s in SHAPES.items()}
        for _ in range(rounds)
    ]


@pytest.mark.parametrize(
    "transform",
    [
        TopK(density=0.05),
        Quantize(bits=2, block_size=64),
        Chain([TopK(density=0.1, selection="exact"), Quantize(bits=4)]),
    ],
    ids=["topk", "quant2", "topk-quant4"],
)
def test_transmitted_plus_final_residual_equals_the_sum_of_updates(transform):
    channel = Channel(transform, error_feedback=True)
    rng = np.random.default_rng(0)
    raw = updates(8)
    residual = None
    sent = {n: np.zeros(s, dtype=np.float32) for n, s in SHAPES.items()}
    for rnd, update in enumerate(raw, start=1):
        encoded, residual, _ = encode_update(channel, update, residual, {}, rng, RoundInfo(rnd, 8, 0))
        transmitted = transform.decode(encoded)
        for name in sent:
            sent[name] += transmitted[name]
    assert all(r.dtype == np.float32 for r in residual.values())
    for name in SHAPES:
        total = np.sum([u[name] for u in raw], axis=0)
        np.testing.assert_allclose(sent[name] + residual[name], total, rtol=1e-5, atol=1e-6)
        assert np.abs(residual[name]).max() > 0  # something really was delayed


def test_residual_catches_up_with_a_dropped_entry():
    # A constant small update in entry 1 is dropped until its residual outgrows entry 0.
    t = TopK(density=0.5, selection="exact")
    channel = Channel(t, error_feedback=True)
    update = {"w": np.array([1.0, 0.4], dtype=np.float32)}
    residual = None
    sent_second = []
    for rnd in range(1, 4):
        info = RoundInfo(rnd, 3, 0)
        encoded, residual, _ = encode_update(channel, update, residual, {}, np.random.default_rng(0), info)
        sent_second.append(float(t.decode(encoded)["w"][1]))
    assert sent_second[0] == 0.0 and sent_second[1] == 0.0
    assert sent_second[2] == pytest.approx(1.2)


def test_compensate_and_residual_are_plain_float32_dicts():
    ef = ErrorFeedback()
    update = {"a": np.ones(3), "b": np.zeros((2, 2), dtype=np.float32)}
    c = ef.compensate(update, None)
    assert c["a"].dtype == np.float32 and c["a"] is not update["a"]
    c2 = ef.compensate(update, {"a": np.full(3, 0.5, dtype=np.float32)})
    np.testing.assert_array_equal(c2["a"], 1.5)
    np.testing.assert_array_equal(c2["b"], 0.0)
    r = ef.residual(c2, {"a": np.ones(3, dtype=np.float32)})
    np.testing.assert_array_equal(r["a"], 0.5)
    np.testing.assert_array_equal(r["b"], c2["b"])  # not transmitted: all kept


def test_mismatches_raise():
    ef = ErrorFeedback()
    with pytest.raises(ValueError, match="'a'"):
        ef.compensate({"a": np.ones(3)}, {"a": np.ones(4, dtype=np.float32)})
    with pytest.raises(ValueError, match="lacks"):
        ef.compensate({"a": np.ones(3)}, {"b": np.ones(3, dtype=np.float32)})
    with pytest.raises(ValueError, match="'a'"):
        ef.residual({"a": np.ones(3)}, {"a": np.ones(2)})
    with pytest.raises(ValueError, match="transmitted has tensors"):
        ef.residual({"a": np.ones(3)}, {"z": np.ones(3)})
