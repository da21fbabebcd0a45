"""Server-side arithmetic against hand-computed expectations, and the num_examples guard."""

import math

import numpy as np
import pytest

from fedcomp.flower.aggregate import BadExamples, check_examples, normalized, weighted_mean, weighted_metrics


def test_weighted_mean_of_updates():
    updates = [
        (1.0, {"w": np.array([1.0, 2.0], np.float32)}),
        (3.0, {"w": np.array([5.0, -2.0], np.float32)}),
    ]
    mean = weighted_mean(updates, ["w"])
    # (1*[1,2] + 3*[5,-2]) / 4 = [4, -1]
    np.testing.assert_allclose(mean["w"], [4.0, -1.0], rtol=1e-6)
    assert mean["w"].dtype == np.float32


def test_clients_that_did_not_train_weigh_equally():
    assert normalized([0.0, 0.0]) == [0.5, 0.5]
    mean = weighted_mean([(0.0, {"w": np.array([2.0], np.float32)}), (0.0, {"w": np.array([4.0], np.float32)})], ["w"])
    np.testing.assert_allclose(mean["w"], [3.0])


def test_metrics_are_example_weighted_and_counts_summed():
    out = weighted_metrics([(10.0, {"loss": 1.0}), (30.0, {"loss": 3.0})])
    assert out == {"loss": 2.5, "num_examples": 40.0}


@pytest.mark.parametrize("claim", [-1, 1.5, math.nan, math.inf, "12", None, True, 101])
def test_impossible_example_counts_are_refused(claim):
    with pytest.raises(BadExamples):
        check_examples(claim, partition_size=100)


def test_plausible_example_counts_pass():
    assert check_examples(100, 100) == 100
    assert check_examples(0, 100) == 0
    assert check_examples(7.0, None) == 7
