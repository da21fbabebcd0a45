"""Server-side aggregation against hand-computed expectations."""

import numpy as np

from fedcomp.flower.strategy import _weighted_mean, weighted_mean


def test_weighted_mean_of_updates():
    updates = [
        (1.0, {"w": np.array([1.0, 2.0], np.float32)}),
        (3.0, {"w": np.array([5.0, -2.0], np.float32)}),
    ]
    mean = weighted_mean(updates, ["w"])
    # (1*[1,2] + 3*[5,-2]) / 4 = [4, -1]
    np.testing.assert_allclose(mean["w"], [4.0, -1.0], rtol=1e-6)
    assert mean["w"].dtype == np.float32


def test_metrics_are_example_weighted_and_counts_summed():
    out = _weighted_mean([(10.0, {"num_examples": 10.0, "loss": 1.0}), (30.0, {"num_examples": 30.0, "loss": 3.0})])
    assert out == {"loss": 2.5, "num_examples": 40.0}
