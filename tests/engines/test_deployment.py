"""Deployment Engine: a real SuperLink and SuperNodes on loopback, `flwr run`, secure by default, byte truth.

The end-to-end runs take one to three minutes each on 2 shared CPU cores (most of it
Flower's ServerApp polling and a ClientApp process per message) and are marked slow; the
failure tests take a few seconds. Every federation here runs with the defaults: TLS with
a CA made for the run, and SuperNode authentication. Each end-to-end run checks the
traffic reconciliation of ``deployment.json`` (see ``docs/deployment.md``): model
traffic equal to the ledger's ``wire_bytes`` to the byte per direction and per message,
and the raw counters equal to ledger + itemized non-message traffic.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from fedcomp.core.rundir import RUN_FILES
from fedcomp.engines.deployment.credentials import create_credentials
from fedcomp.engines.deployment.engine import DEPLOYMENT_FILE, DeploymentError, LocalFederation, deploy
from fedcomp.engines.deployment.federation import INSECURE_WARNING
from fedcomp.engines.deployment.flwr_cli import CONNECTION, FlwrCli, executable
from fedcomp.engines.deployment.processes import alive, free_ports, tagged
from fedcomp.engines.deployment.superlink import TRAFFIC_FILE, read_traffic
from tests.helpers import run_config

TWO_CLIENTS_TWO_ROUNDS = (
    "engine=deployment",
    "task=digits",
    "partition=iid",
    "federation.num_clients=2",
    "federation.fraction_fit=1.0",
    "federation.num_rounds=2",
)
#: What ``flower-supernode`` logs when the SuperLink refuses to activate it (flwr 1.42:
#: Flower's exit code 305, the process itself exits with 1).
ACTIVATION_REFUSED = ("[code: 2004] Failed to activate SuperNode.", "Exit Code: 305")


def _no_process_left(record: dict) -> None:
    """Every PID fedcomp started or saw is gone (or reused by a process that is not ours)."""
    assert record["leftover_pids"] == []
    pids = {p["pid"] for p in record["processes"]} | set(record["stopped_pids"])
    assert len(pids) >= 3  # SuperLink + 2 SuperNodes at least
    ours = set(tagged(record["process_tag"]))
    assert not ours, f"processes left behind: {sorted(ours)}"
    for pid in pids:
        assert not alive(pid) or pid not in ours


def _check_run(run_dir: Path, record: dict, compressor: str) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / DEPLOYMENT_FILE).read_text())
    assert saved["status"] == "complete" and saved["results_complete"]
    assert saved["flwr_run_id"] == record["flwr_run_id"]
    assert saved["tls"] is True and saved["supernode_auth"] is True  # the defaults
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
        assert d["model_traffic"] == d["superlink"] - sum(items.values()) + d["dedup_bytes"]
    down, up = agree["down"], agree["up"]
    # each direction's own non-message traffic
    assert down["non_message"]["acks"] > 0 and down["non_message"]["query"] > 0
    assert down["non_message"]["pull_requests"] == down["non_message"]["bookkeeping"] == 0
    assert up["non_message"]["pull_requests"] > 0 and up["non_message"]["query"] > 0
    assert up["non_message"]["bookkeeping"] > 0 and up["non_message"]["acks"] == 0
    # model traffic equals the ledger to the byte in both directions, under TLS
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


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_deploy_topk_two_supernodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe end to end (``python -m fedcomp.run engine=deployment``: execute -> deploy), TLS + auth."""
    from fedcomp.engines.launch import execute

    summary = execute(run_config(tmp_path / "topk", *TWO_CLIENTS_TWO_ROUNDS, "compressor=topk"))
    assert summary is not None
    record = json.loads((tmp_path / "topk" / DEPLOYMENT_FILE).read_text())
    _check_run(tmp_path / "topk", record, "topk")
    _no_process_left(record)
    assert record["home_removed"] is True  # the Flower home, with every key in it, is gone
    assert len(record["registered_node_ids"]) == 2
    link = next(p for p in record["processes"] if p["name"] == "superlink")
    assert "--ssl-certfile" in link["argv"] and "--enable-supernode-auth" in link["argv"]
    assert "--insecure" not in link["argv"]
    for node in (p for p in record["processes"] if p["name"].startswith("supernode-")):
        assert "--root-certificates" in node["argv"] and "--auth-supernode-private-key" in node["argv"]
        key = Path(node["argv"][node["argv"].index("--auth-supernode-private-key") + 1])
        assert not key.exists() and not key.parent.exists()
    assert summary["bytes"]["up"]["payload_bytes"] < summary["bytes"]["down"]["payload_bytes"] / 10
    out = capsys.readouterr().out
    assert "TLS, registered SuperNodes only" in out and INSECURE_WARNING not in out
    assert "SuperLink counters (flwr ls) vs ledger wire_bytes" in out and "model traffic" in out
    assert "round   2/2" in out


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """One secure SuperLink and two registered SuperNodes shared by the tests below."""
    logs = tmp_path_factory.mktemp("federation")
    cfg = run_config(logs, *TWO_CLIENTS_TWO_ROUNDS)
    with LocalFederation(cfg["engine"], 2, logs / "deployment") as fed:
        yield fed
    assert fed.close() == []
    assert not tagged(fed.procs.tag), "processes left behind"
    assert not fed.home.exists(), "the Flower home (with the keys) was not removed"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_keys_are_private_while_running(federation: LocalFederation) -> None:
    creds = federation.credentials
    assert creds is not None and creds.directory.parent == federation.home
    assert stat.S_IMODE(creds.directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in creds.files()} == {0o600}
    assert len(federation.registered) == 2
    online = {n["node-id"] for n in federation.flwr.nodes() if n["status"] == "online"}
    assert online == set(federation.registered)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_plaintext_client_cannot_talk_to_the_tls_superlink(federation: LocalFederation, tmp_path: Path) -> None:
    host, port = federation.superlink["address"].rsplit(":", 1)
    # the CA made for the run: a TLS client that trusts it gets an answer
    trusting = ssl.create_default_context(cafile=str(federation.credentials.ca_cert))
    https = http.client.HTTPSConnection(host, int(port), context=trusting, timeout=10)
    https.request("GET", "/health")
    assert https.getresponse().status == 200
    https.close()
    # plain HTTP on the same port: the server only speaks TLS
    plain = http.client.HTTPConnection(host, int(port), timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/health")
        plain.getresponse()
    plain.close()
    # TLS that trusts only the system's CAs: the run's certificate is not theirs
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection((host, int(port)), timeout=10) as raw:
        ssl.create_default_context().wrap_socket(raw, server_hostname=host)
    # and Flower's own CLI without TLS (insecure = true) is refused
    home = tmp_path / "plain-home"
    plaintext_cli = FlwrCli(home, federation.superlink["address"], {**federation.procs.env, "FLWR_HOME": str(home)})
    with pytest.raises(DeploymentError, match="flwr ls"):
        plaintext_cli.call("ls", CONNECTION, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_unregistered_supernode_is_refused(federation: LocalFederation, tmp_path: Path) -> None:
    """A SuperNode with a valid TLS setup but a key nobody registered never joins."""
    stranger = create_credentials(tmp_path / "stranger", "127.0.0.1", 1)
    port = free_ports("127.0.0.1", 1)[0]
    argv = [
        executable("flower-supernode"), "--superlink", federation.superlink["address"],
        "--root-certificates", str(federation.credentials.ca_cert),
        "--auth-supernode-private-key", str(stranger.node_keys[0][0]),
        "--port", str(port), "--node-config", "partition-id=1 num-partitions=2",
    ]  # fmt: skip
    proc = federation.procs.start("stranger", argv, cwd=federation.home, critical=False)
    deadline = time.monotonic() + 120
    while proc.popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.popen.returncode not in (None, 0)
    log = proc.log_path.read_text()
    assert all(line in log for line in ACTIVATION_REFUSED), log[-2000:]
    # the SuperLink knows only the registered nodes, and both are still online
    nodes = federation.flwr.nodes()
    assert {n["node-id"] for n in nodes} == set(federation.registered)
    assert all(n["status"] == "online" for n in nodes)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_deploy_identity(federation: LocalFederation, tmp_path: Path) -> None:
    """A run on the shared federation: every message went to a registered node, none to the stranger."""
    cfg = run_config(tmp_path, *TWO_CLIENTS_TWO_ROUNDS, "compressor=none")
    record = federation.run(cfg)
    _check_run(tmp_path, record, "none")
    ledger = pd.read_parquet(tmp_path / "ledger.parquet")
    # identity: each reply carries the whole model, plus the packed layout's small header
    up = ledger[(ledger["recorded_by"] == "server") & (ledger["direction"] == "up")]
    header = up["payload_bytes"] - up["dense_bytes"]
    assert (header == header.iloc[0]).all() and 0 <= header.iloc[0] < 64
    traffic = read_traffic(federation.log_dir / TRAFFIC_FILE, record["flwr_run_id"])
    assert traffic and {r["node"] for r in traffic} == set(federation.registered)
    assert {str(n) for n in ledger["node_id"]} == set(federation.registered)


@pytest.mark.slow
@pytest.mark.timeout(300)
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
    assert not tagged(federation.procs.tag)


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
    assert record["home_removed"] is True  # the credentials made before the port check are gone too
    assert not (tmp_path / "summary.json").exists()


def test_unreachable_superlink_is_a_clear_error_and_insecure_mode_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_ports("127.0.0.1", 1)[0]  # nothing listens there
    cfg = run_config(
        tmp_path, *TWO_CLIENTS_TWO_ROUNDS, f"engine.superlink_address=127.0.0.1:{port}",
        "engine.startup_timeout=3", "engine.tls=false",
    )  # fmt: skip
    assert cfg["engine"]["supernode_auth"] is False  # follows engine.tls
    with pytest.raises(DeploymentError, match=f"SuperLink at 127.0.0.1:{port} is not reachable"):
        deploy(cfg)
    out = capsys.readouterr().out
    assert out.count(INSECURE_WARNING) == 1 and "\n" not in INSECURE_WARNING
    record = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
    assert record["status"] == "incomplete" and "not reachable" in record["reason"]
    assert record["tls"] is False and record["supernode_auth"] is False
    assert record["processes"] == [] and record["leftover_pids"] == []
    assert not (tmp_path / "summary.json").exists()
