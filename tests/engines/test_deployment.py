"""Deployment Engine: a real SuperLink and SuperNodes on loopback, `flwr run`, byte truth.

The two end-to-end runs take about a minute each on 2 CPU cores (most of it Flower's
ServerApp polling every 3 s and a ClientApp process per message); the failure tests a
few seconds each. Each end-to-end run checks the traffic reconciliation of
``deployment.json`` (see ``docs/deployment.md``): the model traffic (the SuperLink's
counters minus the itemized non-message traffic, plus objects not re-sent) within 2% of
the ledger's ``wire_bytes`` per direction, and the raw counters equal to ledger +
itemized to the byte.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from fedcomp.core.rundir import RUN_FILES
from fedcomp.engines.deployment.engine import (
    DEPLOYMENT_FILE,
    DeploymentError,
    LocalFederation,
    _alive,
    _proc_tagged,
    deploy,
    free_ports,
)
from tests.helpers import run_config

TWO_CLIENTS_TWO_ROUNDS = (
    "engine=deployment",
    "task=digits",
    "partition=iid",
    "federation.num_clients=2",
    "federation.fraction_fit=1.0",
    "federation.num_rounds=2",
)


def _no_process_left(record: dict) -> None:
    """Every PID fedcomp started or saw is gone (or reused by a process that is not ours)."""
    assert record["leftover_pids"] == []
    pids = {p["pid"] for p in record["processes"]} | set(record["stopped_pids"])
    assert len(pids) >= 3  # SuperLink + 2 SuperNodes at least
    ours = set(_proc_tagged(record["process_tag"]))
    assert not ours, f"processes left behind: {sorted(ours)}"
    for pid in pids:
        assert not _alive(pid) or pid not in ours


def _check_run(run_dir: Path, record: dict, compressor: str) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / DEPLOYMENT_FILE).read_text())
    assert saved["status"] == "complete" and saved["results_complete"]
    assert saved["flwr_run_id"] == record["flwr_run_id"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["compressor_name"] == compressor and summary["num_failures"] == 0
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    server = ledger[ledger["recorded_by"] == "server"]
    # 2 rounds x 2 clients x (down + up), every row ok; client rows agree with server rows
    assert len(server) == 8 and (server["status"] == "ok").all()
    client = ledger[ledger["recorded_by"] == "client"]
    assert client["wire_bytes"].sum() == server["wire_bytes"].sum()

    counters = saved["superlink_counters"]
    agree = saved["agreement"]
    # the SuperLink's request log is Flower's own counting, request by request
    assert agree["log_matches_counters"] is True
    for direction, key in (("down", "outbound"), ("up", "inbound")):
        d = agree[direction]
        assert d["superlink"] == d["superlink_logged"] == counters[key] > 0
        assert d["ledger_wire"] == server[server["direction"] == direction]["wire_bytes"].sum()
        assert d["messages"] == {"query": 2, "train": 4}
        assert d["dedup_objects_size_unknown"] == 0
        # raw counters = ledger + itemized non-message traffic - objects not re-sent: to the byte
        items = d["non_message"]
        assert d["superlink"] == d["ledger_wire"] + sum(items.values()) - d["dedup_bytes"]
        assert d["unexplained_bytes"] == 0
        # model traffic (counters minus the itemized non-message bytes, plus what dedup saved)
        assert d["model_traffic"] == d["superlink"] - sum(items.values()) + d["dedup_bytes"]
        assert abs(d["model_diff_pct"]) <= 2.0, d
    down, up = agree["down"], agree["up"]
    # each direction's own non-message traffic
    assert down["non_message"]["acks"] > 0 and down["non_message"]["query"] > 0
    assert down["non_message"]["pull_requests"] == down["non_message"]["bookkeeping"] == 0
    assert up["non_message"]["pull_requests"] > 0 and up["non_message"]["query"] > 0
    assert up["non_message"]["bookkeeping"] > 0 and up["non_message"]["acks"] == 0
    # model traffic equals the ledger to the byte in both directions
    assert down["dedup_objects"] == 0 and down["model_diff_bytes"] == 0 and up["model_diff_bytes"] == 0
    # per message: SuperLink envelope + objects - bookkeeping + not re-sent = ledger wire
    rows = agree["per_message"]
    assert len(rows) == 8 and sorted(r["round"] for r in rows) == [1, 1, 1, 1, 2, 2, 2, 2]
    for row in rows:
        assert row["model_traffic"] == row["ledger_wire"], row
        if row["direction"] == "up":
            assert row["bookkeeping"] > 0, row
    for direction in ("down", "up"):
        assert sum(r["model_traffic"] for r in rows if r["direction"] == direction) == agree[direction]["model_traffic"]


@pytest.mark.timeout(240)
def test_deploy_topk_two_supernodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe end to end (``python -m fedcomp.run engine=deployment``: execute -> deploy)."""
    from fedcomp.engines.launch import execute

    summary = execute(run_config(tmp_path / "topk", *TWO_CLIENTS_TWO_ROUNDS, "compressor=topk"))
    assert summary is not None
    record = json.loads((tmp_path / "topk" / DEPLOYMENT_FILE).read_text())
    _check_run(tmp_path / "topk", record, "topk")
    _no_process_left(record)
    assert summary["bytes"]["up"]["payload_bytes"] < summary["bytes"]["down"]["payload_bytes"] / 10
    out = capsys.readouterr().out
    assert "SuperLink counters (flwr ls) vs ledger wire_bytes" in out and "model traffic" in out
    assert "round   2/2" in out


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """One SuperLink and two SuperNodes shared by the tests below (saves a start-up)."""
    logs = tmp_path_factory.mktemp("federation")
    cfg = run_config(logs, *TWO_CLIENTS_TWO_ROUNDS)
    with LocalFederation(cfg["engine"], 2, logs / "deployment") as fed:
        yield fed
    assert fed.close() == []
    assert not _proc_tagged(fed.procs.tag), "processes left behind"


@pytest.mark.timeout(240)
def test_deploy_identity(federation: LocalFederation, tmp_path: Path) -> None:
    cfg = run_config(tmp_path, *TWO_CLIENTS_TWO_ROUNDS, "compressor=none")
    record = federation.run(cfg)
    _check_run(tmp_path, record, "none")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bytes"]["up"]["payload_bytes"] == summary["bytes"]["up"]["dense_bytes"]


@pytest.mark.timeout(180)
def test_supernode_dying_mid_run_stops_everything(federation: LocalFederation, tmp_path: Path) -> None:
    """A SuperNode killed while the run is running: recorded failure, run stopped, no summary."""
    cfg = run_config(tmp_path, *TWO_CLIENTS_TWO_ROUNDS, "federation.num_rounds=5")
    echo = federation.echo

    def kill_on_submit(line: str) -> None:
        echo(line)
        if line.startswith("deployment: flwr run id"):
            node = next(p for p in federation.procs.started if p.name == "supernode-1")
            os.killpg(node.pid, 9)

    federation.echo = kill_on_submit
    try:
        with pytest.raises(DeploymentError, match=r"supernode-1 \(pid \d+\) exited with code -9"):
            federation.run(cfg)
    finally:
        federation.echo = echo
    record = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
    assert record["status"] == "incomplete" and "supernode-1" in record["reason"]
    assert record["flwr_run_id"] is not None and record["run_status"] == "stopped by fedcomp"
    assert not record["results_complete"] and not (tmp_path / "summary.json").exists()
    assert federation.close() == []
    assert not _proc_tagged(federation.procs.tag)


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        cfg = run_config(tmp_path, *TWO_CLIENTS_TWO_ROUNDS, f"engine.superlink_port={port}")
        with pytest.raises(DeploymentError, match=f"engine.superlink_port={port}.*already in use"):
            deploy(cfg)
    finally:
        holder.close()
    record = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
    assert record["status"] == "incomplete" and "already in use" in record["reason"]
    assert record["processes"] == [] and record["leftover_pids"] == []
    assert not (tmp_path / "summary.json").exists()


def test_unreachable_superlink_is_a_clear_error(tmp_path: Path) -> None:
    port = free_ports("127.0.0.1", 1)[0]  # nothing listens there
    cfg = run_config(
        tmp_path, *TWO_CLIENTS_TWO_ROUNDS, f"engine.superlink_address=127.0.0.1:{port}", "engine.startup_timeout=3"
    )
    with pytest.raises(DeploymentError, match=f"SuperLink at 127.0.0.1:{port} is not reachable"):
        deploy(cfg)
    record = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
    assert record["status"] == "incomplete" and "not reachable" in record["reason"]
    assert record["processes"] == [] and record["leftover_pids"] == []
    assert not (tmp_path / "summary.json").exists()
