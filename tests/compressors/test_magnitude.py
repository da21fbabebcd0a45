"""Choosing the k largest magnitudes: the sampled path keeps exactly the exact path's entries."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.magnitude import k_largest, lower_cut, select


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def update(n: int, seed: int) -> np.ndarray:
    """Heavy-tailed like a real update: Gaussian times a log-uniform scale per 1,000 entries."""
    r = rng(seed)
    scales = np.repeat(2.0 ** r.uniform(-3, 3, size=-(-n // 1000)), 1000)[:n]
    return (r.standard_normal(n) * scales).astype(np.float32)


@pytest.mark.parametrize("seed", range(20))
def test_sampled_keeps_exactly_the_k_largest(seed):
    x = {"w": update(400_000, seed)}
    sampled = select(x, 0.01, None, 20_000, rng(100 + seed))["w"]
    exact = select(x, 0.01, None, None, rng(0))["w"]
    assert sampled.size == 4000  # k = round(0.01 * 400,000), not k +- sampling error
    np.testing.assert_array_equal(sampled, exact)
    mags = np.abs(x["w"])
    assert mags[sampled].min() >= np.delete(mags, sampled).max()


def test_model_scope_sampled_equals_exact_over_several_tensors():
    x = {"a": update(150_000, 1) * 0.01, "b": update(250_000, 2), "c": update(3, 3)}
    sampled = select(x, 0.02, None, 10_000, rng(5))
    exact = select(x, 0.02, None, None, rng(0))
    assert sum(p.size for p in sampled.values()) == 8000
    for name in x:
        np.testing.assert_array_equal(sampled[name], exact[name])


def test_the_cut_sits_below_the_kth_largest():
    x = {"w": update(1_000_000, 4)}
    mags = np.abs(x["w"])
    kth = np.partition(mags, mags.size - 10_000)[mags.size - 10_000]
    cuts = [lower_cut({"w": mags}, 10_000, 100_000, rng(s)) for s in range(10)]
    assert all(c <= kth for c in cuts)
    assert all(np.count_nonzero(mags >= c) < 1.2 * 10_000 for c in cuts)  # a few per cent more than k


def test_zeros_are_never_kept():
    x = {"w": np.zeros(50_000, dtype=np.float32)}
    x["w"][[7, 700]] = [1.0, -2.0]
    for sample_size in (None, 1000):
        kept = select(x, 0.01, None, sample_size, rng())["w"]  # k = 500, only two non-zeros
        np.testing.assert_array_equal(kept, [7, 700])
    assert select({"w": np.zeros(10, dtype=np.float32)}, 0.5, None, None, rng())["w"].size == 0


def test_threshold_drops_kept_entries_below_it():
    x = {"w": np.array([0.1, -5.0, 0.2, 3.0, -0.3], dtype=np.float32)}
    np.testing.assert_array_equal(select(x, 0.6, 1.0, None, rng())["w"], [1, 3])  # top 3 minus 0.3
    np.testing.assert_array_equal(select(x, None, 0.2, None, rng())["w"], [1, 2, 3, 4])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sample_size", [None, 1000])
def test_non_finite_raises_naming_the_tensor(bad, sample_size):
    x = {"layer.weight": update(20_000, 0)}
    x["layer.weight"][123] = bad
    with pytest.raises(ValueError, match="'layer.weight'.*NaN or inf"):
        select(x, 0.01, None, sample_size, rng())


def test_k_largest_among_candidates_maps_back_to_positions():
    mags = {"a": np.array([5.0, 1.0, 4.0], dtype=np.float32), "b": np.array([3.0, 6.0], dtype=np.float32)}
    pools = {"a": np.array([0, 2]), "b": np.array([1])}
    got = k_largest(mags, pools, 2)
    np.testing.assert_array_equal(got["a"], [0])
    np.testing.assert_array_equal(got["b"], [1])
