"""The channel: uplink checks, and a compressed downlink every client can follow bit for bit."""

import numpy as np
import pytest

from fedcomp.compressors.base import RoundInfo
from fedcomp.compressors.channel import (
    Broadcast,
    Channel,
    NonFiniteUpdate,
    OutOfSync,
    apply_catch_up,
    checksum,
    encode_update,
)
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.topk import TopK

NAMES = ["w", "b"]


def _model(value=0.0):
    return {"w": np.full((20, 10), value, np.float32), "b": np.full(10, value, np.float32)}


def _globals(rounds, seed=0):
    rng = np.random.default_rng(seed)
    model, out = _model(), []
    for _ in range(rounds):
        model = {n: (v + rng.standard_normal(v.shape).astype(np.float32) * 0.1) for n, v in model.items()}
        out.append(model)
    return out


def _broadcast(compressor=None):
    compressor = compressor or TopK(density=0.1, selection="exact")
    return Broadcast(compressor, _model(), NAMES, size_of=lambda e: e.payload_bytes), compressor


def _advance(server, model, version):
    server.advance(model, np.random.default_rng(version), RoundInfo(version, 10, -1))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_update_is_refused_by_name_and_kept_out_of_the_residual(bad):
    update = _model(0.5)
    update["b"][3] = bad
    channel = Channel(TopK(density=0.5), error_feedback=True)
    with pytest.raises(NonFiniteUpdate, match="in b"):
        encode_update(channel, update, None, {}, np.random.default_rng(0), RoundInfo(1, 1, 0))


def test_up_to_date_clients_share_one_change_and_match_the_server_bit_for_bit():
    server, compressor = _broadcast()
    held = {0: (_model(), 0), 1: (_model(), 0)}
    for version, model in enumerate(_globals(4), start=1):
        _advance(server, model, version)
        for client in held:
            message = server.catch_up(held[client][1])
            assert len(message.deltas) == 1 and message.first_version == version
            held[client] = apply_catch_up(compressor, held[client][0], held[client][1], message, _model(), NAMES)
    for model, version in held.values():
        assert version == server.version == 4
        assert checksum(model, NAMES) == checksum(server.model, NAMES)
        for name in NAMES:
            np.testing.assert_array_equal(model[name], server.model[name])


def test_a_client_that_missed_rounds_replays_them_and_lands_on_the_same_bits():
    server, compressor = _broadcast()
    for version, model in enumerate(_globals(3), start=1):
        _advance(server, model, version)
    message = server.catch_up(0)
    assert message.first_version == 1 and len(message.deltas) == 3 and message.dense is None
    model, version = apply_catch_up(compressor, _model(), 0, message, _model(), NAMES)
    assert version == 3 and checksum(model, NAMES) == server.checksums[3]


def test_a_client_whose_reply_was_lost_skips_what_it_already_applied():
    server, compressor = _broadcast()
    _advance(server, _globals(1)[0], 1)
    first = server.catch_up(0)
    model, version = apply_catch_up(compressor, _model(), 0, first, _model(), NAMES)
    _advance(server, _globals(2)[1], 2)
    # the server never heard back: it still thinks the client holds version 0
    again = server.catch_up(0)
    assert again.first_version == 1 and len(again.deltas) == 2
    model, version = apply_catch_up(compressor, model, version, again, _model(), NAMES)
    assert version == 2 and checksum(model, NAMES) == server.checksums[2]


def test_a_client_that_lost_its_state_is_out_of_sync_and_a_dense_resync_repairs_it():
    server, compressor = _broadcast()
    for version, model in enumerate(_globals(2), start=1):
        _advance(server, model, version)
    wrong = _model(1.0)  # not version 0 although it says so
    with pytest.raises(OutOfSync):
        apply_catch_up(compressor, wrong, 0, server.catch_up(0), _model(), NAMES)
    resync = server.catch_up(None)
    assert resync.dense is not None and resync.deltas == []
    model, version = apply_catch_up(compressor, wrong, 0, resync, _model(), NAMES)
    assert version == 2 and checksum(model, NAMES) == server.checksums[2]


def test_the_dense_model_replaces_a_catch_up_that_costs_more():
    server, compressor = _broadcast(Quantize(bits=8))  # 8-bit: 4 changes cost more than the dense model
    for version, model in enumerate(_globals(5), start=1):
        _advance(server, model, version)
    assert server.catch_up(4).dense is None
    behind = server.catch_up(0)
    assert behind.dense is not None
    assert min(server.history) > 1  # changes nobody will be sent are forgotten


def test_server_side_error_feedback_delivers_what_was_dropped_later():
    server, _ = _broadcast(TopK(density=0.1, selection="exact"))
    target = _globals(1)[0]
    for version in range(1, 40):  # the global model stays put: B converges to it
        _advance(server, target, version)
    for name in NAMES:
        np.testing.assert_allclose(server.model[name], target[name], atol=1e-6)


def test_reports_are_confirmed_only_when_they_match():
    server, _ = _broadcast()
    _advance(server, _globals(1)[0], 1)
    assert server.confirms(1, server.checksums[1])
    assert not server.confirms(1, server.checksums[1] ^ 1)
    assert not server.confirms(7, server.checksums[1])
