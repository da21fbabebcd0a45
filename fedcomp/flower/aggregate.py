"""Server-side arithmetic on what clients send: example-weighted means and the trust checks.

Weighted FedAvg trusts each client's ``num_examples``; :func:`check_examples` refuses a
claim that is negative, non-finite, not an integer, or larger than the partition the
client serves (known from the query at the start of the run).
"""

from __future__ import annotations

import math

import numpy as np

from fedcomp.compressors.base import Tensors


class BadExamples(ValueError):
    """A reply's ``num_examples`` cannot be true; the reply is recorded failed."""


def check_examples(claimed: object, partition_size: int | None) -> int:
    """The number of examples a reply claims, checked.

    Raises
    ------
    BadExamples
        When it is missing, not a finite non-negative integer, or exceeds
        ``partition_size`` (when known).
    """
    if isinstance(claimed, bool) or not isinstance(claimed, (int, float)):
        raise BadExamples(f"num_examples is {claimed!r}, not a number")
    if not math.isfinite(claimed) or claimed < 0 or float(claimed) != int(claimed):
        raise BadExamples(f"num_examples={claimed!r} is not a finite integer >= 0")
    if partition_size is not None and claimed > partition_size:
        raise BadExamples(f"num_examples={int(claimed)} exceeds the partition's {partition_size} examples")
    return int(claimed)


def normalized(weights: list[float]) -> list[float]:
    """Weights that sum to 1 (equal weights when they sum to 0, e.g. clients that did not train)."""
    total = float(sum(weights))
    if total <= 0:
        return [1.0 / len(weights)] * len(weights)
    return [w / total for w in weights]


def weighted_mean(weighted: list[tuple[float, Tensors]], names: list[str]) -> Tensors:
    """Example-weighted mean of updates, accumulated in place (one buffer per tensor)."""
    shares = normalized([w for w, _ in weighted])
    mean = {}
    for name in names:
        acc = np.zeros_like(weighted[0][1][name], dtype=np.float32)
        for share, (_, update) in zip(shares, weighted):
            acc += np.float32(share) * update[name]
        mean[name] = acc
    return mean


def weighted_metrics(items: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted mean of each metric; ``num_examples`` is the sum of the weights."""
    if not items:
        return {}
    shares = normalized([w for w, _ in items])
    keys = sorted({k for _, m in items for k in m})
    out = {key: float(sum(s * m[key] for s, (_, m) in zip(shares, items) if key in m)) for key in keys}
    out["num_examples"] = float(sum(w for w, _ in items))
    return out
