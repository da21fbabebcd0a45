"""signSGD: one bit per entry, decoded as ±step, majority vote on the server."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.chain import Chain
from fedcomp.compressors.lossless import Lossless
from fedcomp.compressors.signsgd import SignSGD


def test_one_bit_per_entry_and_step_on_decode():
    x = np.array([[0.5, -0.1, 0.0], [-3.0, 2.0, -0.0]], dtype=np.float32)
    t = SignSGD(step=0.01)
    enc = t.encode({"w": x}, np.random.default_rng(0))
    assert enc.payload_bytes == math.ceil(6 / 8) == 1
    np.testing.assert_array_equal(
        t.decode(enc)["w"], np.array([[0.01, -0.01, 0.01], [-0.01, 0.01, 0.01]], np.float32)
    )


def test_majority_vote_by_hand():
    t = SignSGD(step=0.5)
    clients = [
        np.array([1.0, -1.0, 2.0, -2.0], np.float32),
        np.array([3.0, -1.0, -2.0, -0.5], np.float32),
        np.array([-1.0, 4.0, -1.0, -9.0], np.float32),
    ]
    payloads = [t.encode({"w": c, "b": c[:2]}, np.random.default_rng(0)) for c in clients]
    reference = {"w": np.zeros(4, np.float32), "b": np.zeros(2, np.float32), "frozen": np.zeros(3)}
    update, state = t.aggregate(payloads, [0.8, 0.1, 0.1], reference, {})
    # votes: +1+1-1, -1-1+1, +1-1-1, -1-1-1 (one vote per client, weights ignored)
    np.testing.assert_array_equal(update["w"], [0.5, -0.5, -0.5, -0.5])
    np.testing.assert_array_equal(update["b"], [0.5, -0.5])
    assert set(update) == {"w", "b"} and state == {}
    # a tie (two clients) gives 0
    tie, _ = t.aggregate(payloads[:2], [0.5, 0.5], reference, {})
    np.testing.assert_array_equal(tie["w"], [0.5, -0.5, 0.0, -0.5])


def test_mean_aggregation_defers_to_fedavg():
    t = SignSGD(aggregation="mean")
    enc = t.encode({"w": np.ones(3, np.float32)}, np.random.default_rng(0))
    assert t.aggregate([enc], [1.0], {"w": np.zeros(3, np.float32)}, {}) is None


def test_vote_refuses_payloads_that_disagree():
    t = SignSGD()
    a = t.encode({"w": np.ones(3, np.float32)}, np.random.default_rng(0))
    b = t.encode({"w": np.ones(4, np.float32)}, np.random.default_rng(0))
    with pytest.raises(DecodeError, match="'w'"):
        t.aggregate([a, b], [0.5, 0.5], {"w": np.zeros(3, np.float32)}, {})


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"step": 0}, "step"), ({"aggregation": "median"}, "aggregation")]
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"compressor.{key}"):
        SignSGD(**kwargs)


def test_chain_votes_after_undoing_the_later_stages():
    chain = Chain([SignSGD(step=1.0), Lossless()])
    clients = [
        np.array([1.0, -1.0, 2.0], np.float32),
        np.array([1.0, 1.0, -2.0], np.float32),
        np.array([-1.0, 1.0, -2.0], np.float32),
    ]
    payloads = [chain.encode({"w": c}, np.random.default_rng(0)) for c in clients]
    update, _ = chain.aggregate(payloads, [1 / 3] * 3, {"w": np.zeros(3, np.float32)}, {})
    np.testing.assert_array_equal(update["w"], [1.0, 1.0, -1.0])
    assert Chain([Lossless(), SignSGD()]).aggregate(payloads, [1 / 3] * 3, {}, {}) is None
