"""Compression that reaches the wire: the packed layout, the floor, a compressed downlink under faults."""

import numpy as np
import pandas as pd
import pytest

from fedcomp.engines.launch import execute
from tests.helpers import DIGITS_SMALL, load_run, run_config

TOPK = ("compressor=topk", "compressor.density=0.05")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    runs = {}
    for layout in ("packed", "arrays"):
        out = tmp_path_factory.mktemp(layout)
        execute(run_config(out, *DIGITS_SMALL, *TOPK, f"wire.layout={layout}"))
        runs[layout] = load_run(out)
    return runs


def test_the_layout_changes_bytes_not_results(layouts):
    packed_metrics, arrays_metrics = layouts["packed"][1], layouts["arrays"][1]
    pd.testing.assert_frame_equal(
        packed_metrics.drop(columns="run_id"), arrays_metrics.drop(columns="run_id"), check_exact=True
    )
    packed, arrays = layouts["packed"][2]["bytes"], layouts["arrays"][2]["bytes"]
    assert packed["up"]["dense_bytes"] == arrays["up"]["dense_bytes"]
    assert packed["up"]["wire_bytes"] < arrays["up"]["wire_bytes"] / 2


def test_packed_messages_cost_the_floor_plus_their_payload(layouts):
    ledger, _, summary = layouts["packed"]
    floor = summary["floor"]
    assert set(floor) == {"down", "up"} and 400 < floor["down"] < 1500
    server = ledger[ledger.recorded_by == "server"]
    framing = server["wire_bytes"] - server["payload_bytes"]
    for direction in ("down", "up"):
        mine = framing[server.direction == direction]
        assert (mine >= floor[direction] - 8).all() and (mine <= floor[direction] + 128).all(), direction
    down = server[server.direction == "down"]
    assert (down["payload_bytes"] == down["dense_bytes"] + 2).all()  # raw model: format + kind byte


def test_a_compressed_downlink_survives_crashes_and_stays_bit_identical(tmp_path):
    cfg = run_config(
        tmp_path, "task=digits", "partition=iid", "federation.num_clients=5", "federation.fraction_fit=1.0",
        "federation.num_rounds=5", *TOPK, "compressor.downlink=true",
        "faults.crash=[1]", "faults.nan=[2]", "faults.corrupt=[3]", "faults.examples=[0]", "faults.rounds=[2,3]",
    )
    execute(cfg)
    ledger, metrics, summary = load_run(tmp_path)
    server = ledger[ledger.recorded_by == "server"]
    down = server[server.direction == "down"]
    # every client that trained held exactly the server's model: no re-sync, no mismatch
    sync = summary["downlink"]
    assert sync["compressed"] and sync.get("mismatch", 0) == 0 and sync.get("out_of_sync", 0) == 0
    # round 1 has nothing new; crashed clients catch up with the changes they missed
    assert set(down["kind"]) >= {"current", "delta", "catch-up"}
    assert "resync" not in set(down["kind"])
    failed = server[server.status == "failed"]
    assert summary["num_failures"] == len(failed) > 0
    reasons = " ".join(failed["error"])
    assert "InjectedFault" in reasons and "NonFiniteUpdate" in reasons and "decode" in reasons
    assert "num_examples" in reasons and "exceeds the partition" in reasons  # weighted FedAvg trusts it
    assert all("\n" not in r and "\x1b" not in r for r in failed["error"])
    # a compressed downlink moves far fewer bytes than the dense model
    assert summary["bytes"]["down"]["wire_bytes"] < summary["bytes"]["down"]["dense_bytes"] / 3
    accuracy = metrics[(metrics.scope == "central") & (metrics.metric == "accuracy")]["value"]
    assert np.isfinite(accuracy).all()
