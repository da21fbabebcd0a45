"""DGC: momentum correction, factor masking, clipping and the warm-up schedule, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import RoundInfo
from fedcomp.compressors.dgc import DGC


def test_warmup_is_the_papers_exponential_schedule():
    dgc = DGC(density=0.001, warmup_rounds=4, warmup_density=0.25)
    got = [dgc.density_at(r) for r in range(1, 7)]
    np.testing.assert_allclose(got, [0.25, 0.0625, 0.015625, 0.00390625, 0.001, 0.001], rtol=0.02)
    assert DGC(density=0.01, warmup_rounds=0).density_at(1) == 0.01


def test_momentum_correction_and_masking_by_hand():
    dgc = DGC(density=0.25, momentum=0.5, warmup_rounds=0, selection="exact")
    g1 = np.array([4.0, 1.0, 0.5, -0.2], np.float32)
    enc, state = dgc.encode_with_state({"w": g1}, np.random.default_rng(0), {}, RoundInfo(1, 2))
    # round 1: u = g, v = g; top-1 of |v| is entry 0, cleared in u and v
    np.testing.assert_array_equal(dgc.decode(enc)["w"], [4.0, 0, 0, 0])
    np.testing.assert_allclose(state["w/u"], [0, 1.0, 0.5, -0.2])
    np.testing.assert_allclose(state["w/v"], [0, 1.0, 0.5, -0.2])
    g2 = np.array([0.0, 1.0, 2.0, 0.0], np.float32)
    enc, state = dgc.encode_with_state({"w": g2}, np.random.default_rng(0), state, RoundInfo(2, 2))
    # u = 0.5 u + g = [0, 1.5, 2.25, -0.1]; v = v + u = [0, 2.5, 2.75, -0.3] -> send entry 2
    np.testing.assert_allclose(dgc.decode(enc)["w"], [0, 0, 2.75, 0])
    np.testing.assert_allclose(state["w/u"], [0, 1.5, 0, -0.1])
    np.testing.assert_allclose(state["w/v"], [0, 2.5, 0, -0.3])


def test_local_clipping_scales_the_whole_update():
    dgc = DGC(density=1.0, clip_norm=1.0, warmup_rounds=0, selection="exact")
    g = {"a": np.array([3.0], np.float32), "b": np.array([4.0], np.float32)}
    enc, _ = dgc.encode_with_state(g, np.random.default_rng(0), {}, RoundInfo(1, 1))
    out = dgc.decode(enc)
    np.testing.assert_allclose([out["a"][0], out["b"][0]], [0.6, 0.8], rtol=1e-6)


def test_payload_is_topks_at_the_rounds_density():
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    dgc = DGC(density=0.001, warmup_rounds=4, selection="exact")
    enc, _ = dgc.encode_with_state({"w": x}, np.random.default_rng(0), {}, RoundInfo(1, 10))
    assert (dgc.decode(enc)["w"] != 0).sum() == 2500  # round 1: 25 %
    enc, _ = dgc.encode_with_state({"w": x}, np.random.default_rng(0), {}, RoundInfo(9, 10))
    assert (dgc.decode(enc)["w"] != 0).sum() == 10
    # values + positions in the cheapest index encoding: int32 40 B, bitmap 1250 B,
    # delta gaps (all < 65536) as uint16 20 B
    assert enc.payload_bytes == 10 * 4 + 10 * 2


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"density": 0}, "density"),
        ({"momentum": 1.0}, "momentum"),
        ({"clip_norm": -1}, "clip_norm"),
        ({"warmup_rounds": -1}, "warmup_rounds"),
        ({"density": 0.5, "warmup_density": 0.25}, "warmup_density"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"compressor.{key}"):
        DGC(**kwargs)
