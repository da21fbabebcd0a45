"""PowerSGD: exact rank-r reconstruction, r(m+n) values, warm-started Q, dense 1-D tensors."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import RoundInfo
from fedcomp.compressors.chain import Chain
from fedcomp.compressors.powersgd import PowerSGD
from fedcomp.compressors.quantize import Quantize


def low_rank(m: int, n: int, r: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    return (g.standard_normal((m, r)) @ g.standard_normal((r, n))).astype(np.float32)


def test_a_rank_r_matrix_is_rebuilt_exactly():
    m = low_rank(60, 40, 3)
    t = PowerSGD(rank=3)
    enc = t.encode({"w": m}, np.random.default_rng(1))
    assert enc.payload_bytes == 4 * 3 * (60 + 40)
    np.testing.assert_allclose(t.decode(enc)["w"], m, atol=1e-4 * np.abs(m).max())


def test_conv_kernels_are_viewed_as_out_by_rest_matrices():
    w = low_rank(8, 18, 2).reshape(8, 2, 3, 3)
    t = PowerSGD(rank=2)
    enc = t.encode({"conv.weight": w}, np.random.default_rng(0))
    assert enc.arrays["conv.weight/P"].size == 8 * 2 and enc.arrays["conv.weight/Q"].size == 18 * 2
    np.testing.assert_allclose(t.decode(enc)["conv.weight"], w, atol=1e-4)


def test_vectors_and_matrices_without_saving_go_dense():
    t = PowerSGD(rank=4)
    x = {"bias": np.ones(10, np.float32), "small": np.ones((4, 4), np.float32)}
    enc = t.encode(x, np.random.default_rng(0))
    assert {e["enc"] for e in enc.meta["tensors"].values()} == {"dense"}
    assert enc.payload_bytes == 4 * (10 + 16)


def test_warm_start_keeps_q_and_converges_to_the_best_rank_r_approximation():
    g = np.random.default_rng(2)
    u, _ = np.linalg.qr(g.standard_normal((50, 50)))
    v, _ = np.linalg.qr(g.standard_normal((30, 30)))
    s = np.array([10, 5, 1, 0.5, *([0.1] * 26)])
    m = (u[:, :30] * s) @ v.T
    m = m.astype(np.float32)
    t = PowerSGD(rank=2)
    state: dict = {}
    errors = []
    for r in range(1, 8):
        enc, state = t.encode_with_state({"w": m}, np.random.default_rng(r), state, RoundInfo(r, 7))
        assert state["w/Q"].shape == (30, 2)
        errors.append(np.linalg.norm(t.decode(enc)["w"] - m))
    best = np.sqrt((s[2:] ** 2).sum())  # Eckart-Young: the truncated SVD's error
    assert errors[-1] == pytest.approx(best, rel=1e-3)
    assert errors[0] > errors[-1]


def test_chain_with_quant8_quantizes_the_factors():
    m = low_rank(64, 64, 2)
    chain = Chain([PowerSGD(rank=2), Quantize(bits=8)])
    enc = chain.encode({"w": m}, np.random.default_rng(0))
    assert enc.payload_bytes == 2 * (64 * 2) + 2 * 8  # two uint8 factors + scale/min each
    np.testing.assert_allclose(chain.decode(enc)["w"], m, atol=0.05 * np.abs(m).max())


def test_chain_forwards_the_state_per_stage():
    chain = Chain([PowerSGD(rank=1), Quantize(bits=8)])
    m = low_rank(20, 20, 1)
    _, state = chain.encode_with_state({"w": m}, np.random.default_rng(0), {}, RoundInfo(1, 2))
    assert list(state) == ["0:w/Q"]


def test_rank_below_one_names_the_key():
    with pytest.raises(ValueError, match="compressor.rank"):
        PowerSGD(rank=0)
