"""fedcomp.analysis.stats against hand-computed intervals and windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedcomp.analysis import stats

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2), from a t table: 4.303
T975_1 = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1), from a t table: 12.706


def test_student_t_interval_by_hand():
    ci = stats.mean_ci([1.0, 2.0, 3.0])
    # s = 1, half = t(0.975, 2) * 1 / sqrt(3) = 2.484
    assert (ci.mean, ci.n) == (2.0, 3)
    assert ci.half == pytest.approx(T975_2 / math.sqrt(3)) and ci.half == pytest.approx(2.484, abs=1e-3)
    assert (ci.low, ci.high) == pytest.approx((2.0 - 2.484, 2.0 + 2.484), abs=1e-3)
    assert not ci.uninformative and not ci.clipped


def test_interval_respects_the_range():
    # accuracy 0.98, 0.99, 1.00: half = 4.303 * 0.01 / sqrt(3) = 0.02484; 0.99 + 0.0248 > 1
    ci = stats.mean_ci([0.98, 0.99, 1.0], stats.metric_bounds("accuracy"))
    assert ci.mean == pytest.approx(0.99)
    assert ci.high == 1.0 and ci.low == pytest.approx(0.99 - 0.02484, abs=1e-5)
    assert ci.half == pytest.approx(0.02484, abs=1e-5)  # the unclipped half-width is kept
    assert ci.clipped


def test_two_seeds_are_uninformative_and_one_has_no_interval():
    two = stats.mean_ci([0.6, 0.8], (0.0, 1.0))
    # s = 0.1414, half = 12.706 * 0.1414 / sqrt(2) = 1.2706: the interval would be [-0.57, 1.97]
    assert two.half == pytest.approx(T975_1 * 0.1) and two.uninformative
    assert (two.low, two.high) == (0.0, 1.0)
    one = stats.mean_ci([0.7])
    assert one.n == 1 and math.isnan(one.half) and one.low == one.high == 0.7 and not one.uninformative


def test_nan_and_none_are_left_out():
    ci = stats.mean_ci([1.0, np.nan, None, 3.0])
    assert (ci.mean, ci.n) == (2.0, 2)
    empty = stats.mean_ci([np.nan])
    assert empty.n == 0 and math.isnan(empty.mean)


@pytest.mark.parametrize(("metric", "bounds"), [
    ("accuracy", (0.0, 1.0)), ("eval_accuracy", (0.0, 1.0)), ("loss", (0.0, math.inf)),
    ("perplexity", (1.0, math.inf)), ("bleu", (-math.inf, math.inf)),
])
def test_metric_bounds(metric, bounds):
    assert stats.metric_bounds(metric) == bounds


def test_delta_bounds_and_direction():
    assert stats.delta_bounds("accuracy") == (-1.0, 1.0)
    assert stats.lower_is_better("perplexity") and stats.lower_is_better("train_loss")
    assert not stats.lower_is_better("accuracy")
    values = pd.Series([3.0, 2.0, 1.0])
    assert stats.reached(values, "loss", 2.0).tolist() == [False, True, True]
    assert stats.reached(values, "accuracy", 2.0).tolist() == [True, True, False]


def test_headline_is_the_mean_of_the_last_rounds_after_round_0():
    curve = pd.Series([0.1, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], index=range(7))
    assert stats.headline(curve, 5) == (pytest.approx((0.6 + 0.7 + 0.8 + 0.9 + 1.0) / 5), 5)
    assert stats.headline(curve, 1) == (1.0, 1)
    # more window than rounds: rounds 1..6 (never the initial model of round 0)
    assert stats.headline(curve, 10) == (pytest.approx(4.5 / 6), 6)
    assert stats.headline(pd.Series([0.1], index=[0]), 5)[1] == 0
