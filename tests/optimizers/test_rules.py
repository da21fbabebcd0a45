"""Server update rules against hand computations (Reddi et al. 2021; Hsu et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.channel import add
from fedcomp.optimizers.rules import FedAdam, FedAvg, FedAvgM, FedYogi

X = {"w": np.array([1.0, -2.0], np.float32), "frozen": np.array([7.0], np.float32)}
D1 = {"w": np.array([0.5, 0.1], np.float32)}
D2 = {"w": np.array([-0.2, 0.3], np.float32)}


def test_fedavg_with_lr_one_is_todays_plain_addition_bit_for_bit():
    g = np.random.default_rng(0)
    x = {"a": g.standard_normal(1000).astype(np.float32)}
    d = {"a": (g.standard_normal(1000) * 1e-3).astype(np.float32)}
    got = FedAvg(lr=1.0).step(x, d)
    np.testing.assert_array_equal(got["a"], add(x, d)["a"])
    assert got["a"].dtype == np.float32


def test_fedavg_scales_by_lr_and_leaves_other_tensors():
    got = FedAvg(lr=0.5).step(X, D1)
    np.testing.assert_allclose(got["w"], [1.25, -1.95])
    assert got["frozen"] is X["frozen"]


def test_fedavgm_by_hand():
    opt = FedAvgM(lr=2.0, momentum=0.9)
    x1 = opt.step(X, D1)  # v = [0.5, 0.1]; x = x + 2 v
    np.testing.assert_allclose(x1["w"], [2.0, -1.8], rtol=1e-6)
    x2 = opt.step(x1, D2)  # v = 0.9 [0.5, 0.1] + [-0.2, 0.3] = [0.25, 0.39]
    np.testing.assert_allclose(x2["w"], [2.5, -1.02], rtol=1e-6)


def adam_by_hand(deltas, lr, b1, b2, tau, yogi=False):
    x, m, v = [1.0, -2.0], [0.0, 0.0], [tau**2, tau**2]
    for d in deltas:
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * d[i]
            if yogi:
                v[i] = v[i] - (1 - b2) * d[i] ** 2 * math.copysign(1, v[i] - d[i] ** 2)
            else:
                v[i] = b2 * v[i] + (1 - b2) * d[i] ** 2
            x[i] += lr * m[i] / (math.sqrt(v[i]) + tau)
    return x


@pytest.mark.parametrize(("cls", "yogi"), [(FedAdam, False), (FedYogi, True)])
def test_adaptive_rules_by_hand(cls, yogi):
    opt = cls(lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    x = opt.step(opt.step(X, D1), D2)
    expected = adam_by_hand([[0.5, 0.1], [-0.2, 0.3]], 0.1, 0.9, 0.99, 1e-3, yogi)
    np.testing.assert_allclose(x["w"], expected, rtol=1e-5)


def test_yogi_and_adam_differ_once_v_exceeds_the_square():
    adam, yogi = FedAdam(lr=0.1), FedYogi(lr=0.1)
    big, small = {"w": np.array([1.0, 1.0], np.float32)}, {"w": np.array([0.01, 0.01], np.float32)}
    xa = adam.step(adam.step(X, big), small)
    xy = yogi.step(yogi.step(X, big), small)
    assert not np.allclose(xa["w"], xy["w"])


def test_update_of_an_unknown_tensor_is_refused():
    with pytest.raises(ValueError, match="'v'"):
        FedAvg().step(X, {"v": np.zeros(2, np.float32)})
