"""FetchSGD: a linear count sketch that finds heavy hitters; momentum and error on the server."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.fetchsgd import FetchSGD

SHAPES = {"a": (40, 50), "b": (3000,)}


def model(seed: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {n: (g.standard_normal(s) * scale).astype(np.float32) for n, s in SHAPES.items()}


def test_payload_is_the_sketch():
    f = FetchSGD(rows=5, sketch_density=0.02, density=0.005)
    enc = f.encode(model(0), np.random.default_rng(0))
    assert list(enc.arrays) == ["fetchsgd/sketch"]
    assert enc.payload_bytes == 4 * 5 * round(0.02 * 5000)


def test_sketch_is_a_count_sketch_by_hand():
    f = FetchSGD(rows=3, sketch_density=0.1, density=0.01)
    x = model(1)
    table = f.encode(x, np.random.default_rng(0)).arrays["fetchsgd/sketch"].reshape(3, 500)
    vector = np.concatenate([x["a"].reshape(-1), x["b"]]).astype(np.float64)
    buckets, signs = f._sketcher(5000).hashes(np.arange(5000))
    for j in range(3):
        expected = np.zeros(500)
        np.add.at(expected, buckets[j], signs[j] * vector)
        np.testing.assert_allclose(table[j], expected, atol=1e-6)


def test_a_planted_heavy_hitter_is_recovered():
    f = FetchSGD(rows=5, sketch_density=0.02, density=0.0002)  # k = 1
    x = model(2)
    x["b"][1234] = 5.0
    dec = f.decode(f.encode(x, np.random.default_rng(0)))
    assert np.flatnonzero(dec["b"]).tolist() == [1234] and not dec["a"].any()
    assert dec["b"][1234] == pytest.approx(5.0, abs=0.05)


def test_sketches_add_up_and_the_server_keeps_momentum_and_error():
    f = FetchSGD(rows=5, sketch_density=0.05, density=0.0002, momentum=0.5)
    a, b = model(3), model(4)
    a["a"][7, 7] = 4.0
    b["a"][7, 7] = 2.0
    payloads = [f.encode(a, np.random.default_rng(0)), f.encode(b, np.random.default_rng(0))]
    mean = {n: (a[n] + b[n]) / 2 for n in SHAPES}
    # linear: the weighted sum of sketches is the sketch of the weighted mean
    total = (
        0.5 * payloads[0].arrays["fetchsgd/sketch"] + 0.5 * payloads[1].arrays["fetchsgd/sketch"]
    )
    np.testing.assert_allclose(
        total, f.encode(mean, np.random.default_rng(0)).arrays["fetchsgd/sketch"], atol=1e-6
    )
    reference = {
        **{n: np.zeros(s, np.float32) for n, s in SHAPES.items()},
        "frozen": np.zeros(2, np.float32),
    }
    update, state = f.aggregate(payloads, [0.5, 0.5], reference, {})
    assert set(update) == set(SHAPES)
    assert np.flatnonzero(update["a"]).tolist() == [7 * 50 + 7]
    assert update["a"][7, 7] == pytest.approx(3.0, abs=0.05)
    # the heavy hitter's counters were zeroed; momentum/error elsewhere are what remains
    u, e = state["fetchsgd/u"].reshape(5, -1), state["fetchsgd/e"].reshape(5, -1)
    buckets, _ = f._sketcher(5000).hashes(np.array([357]))
    assert not u[np.arange(5), buckets[:, 0]].any() and not e[np.arange(5), buckets[:, 0]].any()
    np.testing.assert_allclose(e, u)  # first round: S_e = S_u
    # round 2 without new signal: momentum 0.5 u is added to the error
    zero = f.encode(
        {n: np.zeros(s, np.float32) for n, s in SHAPES.items()}, np.random.default_rng(0)
    )
    _, state2 = f.aggregate([zero], [1.0], reference, state)
    touched = state2["fetchsgd/e"] == 0
    np.testing.assert_allclose(
        state2["fetchsgd/u"][~touched], 0.5 * state["fetchsgd/u"][~touched], rtol=1e-6
    )
    np.testing.assert_allclose(
        state2["fetchsgd/e"][~touched], 1.5 * state["fetchsgd/e"][~touched], rtol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"sketch_density": 0.001, "density": 0.01}, "sketch_density"),
        ({"rows": 0}, "rows"),
        ({"momentum": 1}, "momentum"),
        ({"density": 0}, "density"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"compressor.{key}"):
        FetchSGD(**kwargs)
