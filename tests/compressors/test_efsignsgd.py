"""EF-signSGD: (||p||_1 / d) sign(p), one bit per entry plus one scale, with error feedback."""

from __future__ import annotations

import math

import numpy as np

from fedcomp.compressors.base import RoundInfo
from fedcomp.compressors.channel import Channel, encode_update
from fedcomp.compressors.efsignsgd import EFSignSGD


def test_scaled_sign_by_hand():
    p = np.array([0.5, -0.1, 0.0, -3.0, 2.0], dtype=np.float32)
    enc = EFSignSGD().encode({"w": p}, np.random.default_rng(0))
    assert enc.payload_bytes == math.ceil(5 / 8) + 4
    scale = (0.5 + 0.1 + 0.0 + 3.0 + 2.0) / 5
    np.testing.assert_allclose(
        EFSignSGD().decode(enc)["w"], scale * np.array([1, -1, 1, -1, 1]), rtol=1e-6
    )


def test_error_feedback_delivers_the_sum_over_rounds():
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(50).astype(np.float32) for _ in range(20)]
    channel = Channel(compressor=EFSignSGD(), error_feedback=True)
    residual = None
    delivered = np.zeros(50)
    for r, u in enumerate(updates, start=1):
        enc, residual, _ = encode_update(channel, {"w": u}, residual, {}, rng, RoundInfo(r, 20))
        delivered += EFSignSGD().decode(enc)["w"]
    np.testing.assert_allclose(delivered + residual["w"], np.sum(updates, axis=0), atol=1e-4)
