"""End-to-end simulations on Flower's engine: the ledger, the four files, failures."""

import pandas as pd
import pytest

from fedcomp.core.ledger import COLUMNS
from fedcomp.core.rundir import RUN_FILES
from fedcomp.engines.launch import execute
from tests.helpers import DIGITS_SMALL, load_run, run_config

KEYS = ["round", "phase", "partition_id", "direction"]
MEASURES = ["dense_bytes", "payload_bytes", "wire_bytes", "request_bytes"]


@pytest.fixture(scope="module")
def identity_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity")
    execute(run_config(out, *DIGITS_SMALL, "federation.fraction_evaluate=0.5"))
    return out


def test_run_writes_the_four_files_per_the_contract(identity_run):
    for name in RUN_FILES:
        assert (identity_run / name).is_file(), name
    ledger, metrics, summary = load_run(identity_run)
    assert list(ledger.columns) == COLUMNS
    assert set(ledger["phase"]) == {"train", "evaluate"}
    assert set(ledger["direction"]) == {"down", "up"}
    assert set(ledger["recorded_by"]) == {"server", "client"}
    assert (ledger["status"] == "ok").all()
    assert list(metrics.columns) == ["run_id", "round", "scope", "metric", "value"]
    central = metrics[(metrics.scope == "central") & (metrics.metric == "accuracy")]
    assert sorted(central["round"]) == [0, 1, 2]
    assert summary["num_failures"] == 0
    assert len(summary["partitions"]) == 4
    # FedAvg weights: each round's train_num_examples is the sampled partitions' total size
    sizes = {p["partition_id"]: p["num_examples"] for p in summary["partitions"]}
    down = ledger[(ledger.recorded_by == "server") & (ledger.phase == "train") & (ledger.direction == "down")]
    counted = metrics[(metrics.scope == "federated") & (metrics.metric == "train_num_examples")]
    for rnd, value in zip(counted["round"], counted["value"]):
        cohort = down[down["round"] == rnd]["partition_id"]
        assert value == sum(sizes[p] for p in cohort) > 3


def test_identity_dense_equals_the_formula_and_payload_equals_dense(identity_run):
    ledger, _, summary = load_run(identity_run)
    formula = summary["formula"]
    server = ledger[ledger.recorded_by == "server"]
    train = server[server.phase == "train"]
    # 3 clients x 2 rounds, model down and update up
    assert len(train) == 3 * 2 * 2
    assert summary["bytes"]["up"]["dense_bytes"] == formula["cohort_up_total"]
    assert summary["bytes"]["down"]["dense_bytes"] == formula["cohort_down_total"]
    # packed: the raw model plus its format and kind bytes
    assert (train["payload_bytes"] == train["dense_bytes"] + 2).all()
    assert (train["wire_bytes"] > train["payload_bytes"]).all()


def test_client_and_server_rows_agree_exactly(identity_run):
    ledger, _, _ = load_run(identity_run)
    server = ledger[ledger.recorded_by == "server"].set_index(KEYS)[MEASURES].sort_index()
    client = ledger[ledger.recorded_by == "client"].set_index(KEYS)[MEASURES].sort_index()
    assert len(server) == len(client) > 0
    pd.testing.assert_frame_equal(server, client)


def test_failing_and_corrupt_clients_are_recorded_not_dropped(tmp_path):
    cfg = run_config(
        tmp_path, *DIGITS_SMALL, "federation.fraction_fit=1.0", "federation.num_rounds=1",
        "faults.crash=[1]", "faults.corrupt=[2]",
    )
    execute(cfg)
    ledger, _, summary = load_run(tmp_path)
    server = ledger[ledger.recorded_by == "server"]
    assert summary["num_failures"] == 2
    crashed = server[server.partition_id == 1]
    assert list(crashed["direction"]) == ["down"]  # the model was sent; no update came back
    assert crashed["status"].item() == "failed" and crashed["dense_bytes"].item() > 0
    corrupt_up = server[(server.partition_id == 2) & (server.direction == "up")]
    assert corrupt_up["status"].item() == "failed"
    assert "decode" in corrupt_up["error"].item() and corrupt_up["wire_bytes"].item() > 0
    ok = server[server.partition_id.isin([0, 3])]
    assert (ok["status"] == "ok").all()
