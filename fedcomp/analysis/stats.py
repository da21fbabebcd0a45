"""Statistics over seeds: means, 95% Student-t intervals kept inside a metric's range.

Interval
    ``mean ± t(0.975, n - 1) · s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``) over the ``n`` non-NaN values, then clipped to the values the figure can
    take (accuracy in [0, 1], bytes >= 0, ...): an interval never claims an impossible
    value. With ``n = 2`` the t factor is 12.7, so the interval is too wide to say
    anything: :attr:`Interval.uninformative` flags ``n < 3`` and the tables say so.
    ``n = 1`` has no interval at all (NaN half-width).

Headline metric
    A single round swings 2–5 points on mnist, so the headline figure of a run is the mean
    of its last ``final_window`` rounds (:func:`headline`); the last round stays available
    beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Rounds averaged for the headline metric when a run's config does not say
#: (config key ``report.final_window``).
DEFAULT_FINAL_WINDOW = 5
#: Seeds below which a 95% interval is reported as uninformative.
MIN_INFORMATIVE_N = 3
#: Metric name endings where smaller is better.
LOWER_IS_BETTER = ("loss", "perplexity")
#: Metric name endings whose values are fractions in [0, 1].
FRACTION_METRICS = ("accuracy", "acc", "f1", "precision", "recall")

Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)
NON_NEGATIVE: Bounds = (0.0, math.inf)


@dataclass(frozen=True)
class Interval:
    """Mean and 95% Student-t interval of ``n`` values, clipped to a range.

    Attributes
    ----------
    mean
        Sample mean (NaN for ``n = 0``).
    half
        Unclipped half-width ``t · s / sqrt(n)`` (NaN for ``n < 2``).
    low, high
        Interval bounds clipped to the figure's range (equal to ``mean`` for ``n < 2``).
    n
        Number of values used (NaN values are left out).
    """

    mean: float
    half: float
    low: float
    high: float
    n: int

    @property
    def uninformative(self) -> bool:
        """True for ``1 < n < 3``: an interval exists but is too wide to mean anything."""
        return 1 < self.n < MIN_INFORMATIVE_N

    @property
    def clipped(self) -> bool:
        """True when the range cut the symmetric interval on either side."""
        if math.isnan(self.half):
            return False
        return self.low > self.mean - self.half or self.high < self.mean + self.half


def t_quantile(dof: int, q: float = 0.975) -> float:
    """Student-t quantile with ``dof`` degrees of freedom (scipy)."""
    return float(stats.t.ppf(q, dof))


def mean_ci(values: Iterable[float], bounds: Bounds = UNBOUNDED) -> Interval:
    """Mean and 95% Student-t interval of the non-NaN ``values``, clipped to ``bounds``."""
    arr = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    arr = arr[~np.isnan(arr)]
    n = len(arr)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if n == 1:
        return Interval(mean, math.nan, mean, mean, 1)
    half = t_quantile(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    low, high = bounds
    return Interval(mean, half, max(low, mean - half), min(high, mean + half), n)


def lower_is_better(metric: str) -> bool:
    """True for loss- and perplexity-like metrics."""
    return str(metric).endswith(LOWER_IS_BETTER)


def metric_bounds(metric: str) -> Bounds:
    """The values a metric can take: [0, 1] for accuracy-like, [0, inf) for loss-like.

    Perplexity is at least 1; other metrics are unbounded.
    """
    name = str(metric)
    if name.endswith(FRACTION_METRICS):
        return (0.0, 1.0)
    if name.endswith("perplexity"):
        return (1.0, math.inf)
    if name.endswith("loss"):
        return NON_NEGATIVE
    return UNBOUNDED


def delta_bounds(metric: str) -> Bounds:
    """The values a difference of two values of ``metric`` can take."""
    low, high = metric_bounds(metric)
    span = high - low
    return (-span, span)


def headline(curve: pd.Series, window: int) -> tuple[float, int]:
    """Mean of the metric over the last ``window`` rounds after round 0, and rounds used.

    ``curve`` is indexed by round (round 0 is the initial model and never averaged). A
    run with fewer rounds than ``window`` averages what it has; the count says so.
    """
    values = curve[curve.index > 0].dropna().sort_index()
    if values.empty:
        return math.nan, 0
    last = values.iloc[-window:]
    return float(last.mean()), len(last)


def reached(values: pd.Series, metric: str, target: float) -> pd.Series:
    """Boolean mask: where ``values`` reach ``target`` (``<=`` if lower is better)."""
    return values <= target if lower_is_better(metric) else values >= target
