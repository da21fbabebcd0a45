"""The in-process engine: Flower's Simulation Engine semantics without Ray, and the same
results as the Ray engine for the same seed."""

from __future__ import annotations

import os
import threading
import time

import flwr.supercore.corestate.utils as flower_ids
import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp

from fedcomp.engines.inprocess import run_inprocess
from fedcomp.engines.launch import execute
from tests.helpers import load_run, run_config

NODES = 3


def counting_client(fail_partition: int | None = None) -> ClientApp:
    """Counts its calls in its Context state; raises on ``fail_partition`` after counting."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        calls = int(context.state.config_records.get("seen", ConfigRecord({"n": 0}))["n"]) + 1
        context.state["seen"] = ConfigRecord({"n": calls})
        pid = int(context.node_config["partition-id"])
        if pid == fail_partition:
            raise RuntimeError(f"partition {pid} fails on purpose")
        msg.content["config"]["touched"] = True  # must not reach the server's copy
        return Message(RecordDict({"metrics": MetricRecord({"pid": pid, "calls": calls,
                                                            "partitions": int(context.node_config["num-partitions"])})}),
                       reply_to=msg)

    return app


def collecting_server(rounds: int, out: dict, timeout: float | None = None) -> ServerApp:
    """Sends one train message per node per round; keeps what was sent and received."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = sorted(grid.get_node_ids())
        out["nodes"] = nodes
        for rnd in range(1, rounds + 1):
            sent = [Message(RecordDict({"config": ConfigRecord({"round": rnd})}), node, MessageType.TRAIN,
                            group_id=str(rnd)) for node in nodes]
            replies = list(grid.send_and_receive(sent, timeout=timeout))
            out.setdefault("sent", []).append(sent)
            out.setdefault("replies", []).append(replies)

    return app


def test_contexts_persist_per_node_and_replies_carry_flower_metadata():
    out: dict = {}
    run_inprocess(collecting_server(2, out), counting_client(), NODES)
    assert len(out["nodes"]) == NODES
    for rnd, (sent, replies) in enumerate(zip(out["sent"], out["replies"]), start=1):
        by_id = {m.metadata.message_id: m for m in sent}
        assert len(replies) == NODES and set(by_id) == {r.metadata.reply_to_message_id for r in replies}
        for reply in replies:
            original = by_id[reply.metadata.reply_to_message_id]
            assert reply.metadata.src_node_id == original.metadata.dst_node_id
            assert reply.metadata.run_id == original.metadata.run_id
            assert reply.metadata.group_id == str(rnd)
            assert reply.metadata.message_type == MessageType.TRAIN
            assert reply.metadata.message_id and reply.metadata.message_id != original.metadata.message_id
            assert reply.content["metrics"]["calls"] == rnd  # the node's Context state persisted
            assert reply.content["metrics"]["partitions"] == NODES
        assert sorted(int(r.content["metrics"]["pid"]) for r in replies) == list(range(NODES))
        assert all("touched" not in m.content["config"] for m in sent)  # the ClientApp got a copy


def test_a_client_that_raises_becomes_an_error_reply_and_keeps_its_context():
    out: dict = {}
    run_inprocess(collecting_server(2, out), counting_client(fail_partition=1), NODES)
    for replies in out["replies"]:
        errors = [r for r in replies if r.has_error()]
        assert len(errors) == 1 and len(replies) == NODES
        assert errors[0].error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
        assert "partition 1 fails on purpose" in errors[0].error.reason
    # the failing call's state change was discarded (as a Ray actor's copy is): other
    # nodes count 2 calls in round 2
    assert sorted(int(r.content["metrics"]["calls"]) for r in out["replies"][1] if not r.has_error()) == [2, 2]


def test_send_and_receive_gives_up_at_its_timeout():
    slow = ClientApp()

    @slow.train()
    def train(msg: Message, context: Context) -> Message:
        time.sleep(0.5)
        return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)

    server = ServerApp()
    waited: list[tuple[int, float]] = []

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        start = time.monotonic()
        replies = grid.send_and_receive([Message(RecordDict(), n, MessageType.TRAIN) for n in grid.get_node_ids()],
                                        timeout=0.2)
        waited.append((len(list(replies)), time.monotonic() - start))

    start = time.monotonic()
    run_inprocess(server, slow, 2)
    (count, seconds), = waited
    assert count == 0 and 0.2 <= seconds < 0.5  # no reply by the deadline, and it did not wait longer
    assert time.monotonic() - start >= 1.0  # the engine still lets its worker finish both calls


def test_push_and_pull_without_send_and_receive():
    app = ServerApp()
    got: list = []

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = sorted(grid.get_node_ids())
        ids = set(grid.push_messages([Message(RecordDict({"config": ConfigRecord({"round": 1})}), n,
                                              MessageType.TRAIN) for n in nodes]))
        deadline = time.monotonic() + 10
        while ids and time.monotonic() < deadline:
            for reply in grid.pull_messages(ids):
                got.append(reply)
                ids.discard(reply.metadata.reply_to_message_id)
            time.sleep(0.01)

    run_inprocess(app, counting_client(), NODES)
    assert len(got) == NODES and not any(r.has_error() for r in got)


def test_torch_threads_set_by_a_client_are_restored():
    before = torch.get_num_threads()
    app = ClientApp()
    seen: list[int] = []

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        grid.send_and_receive([Message(RecordDict(), n, MessageType.TRAIN) for n in grid.get_node_ids()])
        seen.append(torch.get_num_threads())

    run_inprocess(server, app, 2)
    assert seen == [before] and torch.get_num_threads() == before


def test_a_server_app_exception_propagates_and_the_worker_stops():
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        raise ValueError("server side")

    threads = threading.active_count()
    with pytest.raises(ValueError, match="server side"):
        run_inprocess(server, counting_client(), 2)
    assert threading.active_count() == threads


# ------------------------------------------------------------------ same results as Ray
@pytest.fixture()
def fixed_width_ids(monkeypatch):
    """Node and run ids with the top bit set on both engines.

    Flower draws them from ``os.urandom``; wire_bytes carries them as varints (9 or 10
    bytes), so with random ids two runs differ by a byte here and there. With every id
    at or above 2**63 both engines' messages have the same size, to the byte.
    """
    monkeypatch.setattr(flower_ids, "urandom", lambda n: os.urandom(n - 1) + bytes([os.urandom(1)[0] | 0x80]))


SMALL = ("task=digits", "partition=iid", "federation.num_clients=4", "federation.fraction_fit=0.75",
         "federation.num_rounds=2")
#: Error feedback keeps a residual in each node's Context; partition 1 raises every round.
CRASH = ("compressor=topk", "compressor.error_feedback=true", "faults.crash=[1]")
KEYS = ["recorded_by", "round", "phase", "partition_id", "direction"]


def _run(tmp_path, engine: str, *overrides: str):
    out = tmp_path / engine
    execute(run_config(out, *SMALL, *overrides, f"engine={engine}"))
    return load_run(out)


def _rows(ledger: pd.DataFrame) -> pd.DataFrame:
    return ledger.drop(columns=["run_id", "node_id", "error"]).sort_values(KEYS).reset_index(drop=True)


def test_same_ledger_and_metrics_as_the_ray_engine(tmp_path, fixed_width_ids):
    ray_ledger, ray_metrics, ray_summary = _run(tmp_path, "simulation", *CRASH)
    ledger, metrics, summary = _run(tmp_path, "inprocess", *CRASH)
    pd.testing.assert_frame_equal(_rows(ledger), _rows(ray_ledger))  # every byte column, every status
    failed = ledger[ledger.status == "failed"]
    assert len(failed) >= 1 and set(failed.partition_id) == {1}  # each round partition 1 was sampled
    assert set(failed.recorded_by) == {"server"} and set(failed.direction) == {"down"}
    assert all("faults.crash" in e for e in failed.error)
    assert all("faults.crash" in e for e in ray_ledger[ray_ledger.status == "failed"].error)
    pd.testing.assert_frame_equal(metrics.drop(columns="run_id"), ray_metrics.drop(columns="run_id"))
    assert summary["partitions"] == ray_summary["partitions"]
    assert np.isfinite(metrics["value"]).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [("compressor=none", "seed=1"), ("compressor=quant4",), ("compressor=topk", "compressor.downlink=true"),
     ("compressor=topk_quant8", "federation.fraction_evaluate=0.5")],
)
def test_a_small_sweep_gives_the_ray_engines_results(tmp_path, fixed_width_ids, overrides):
    ray_ledger, ray_metrics, _ = _run(tmp_path, "simulation", *overrides)
    ledger, metrics, _ = _run(tmp_path, "inprocess", *overrides)
    pd.testing.assert_frame_equal(_rows(ledger), _rows(ray_ledger))
    assert (ledger.status == "ok").all()
    pd.testing.assert_frame_equal(metrics.drop(columns="run_id"), ray_metrics.drop(columns="run_id"))
