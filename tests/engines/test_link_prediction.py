"""``link_bytes``: what a SuperLink that keeps objects moves, predicted in simulation, checked in deployment.

Each test runs the same experiment twice: in simulation (the in-process engine, where
``link_bytes`` is a prediction) and on the Deployment Engine (TLS, registered
SuperNodes), where the SuperLink's own counters say what it moved for model messages.
The deployment's own ledger predicts its counters to the byte. The simulation predicts
them to within the random ids: node, run and task ids are random 64-bit integers in
every engine, and a varint of one takes 9 or 10 bytes (a few bytes per message).

Where two replies of a round carry the same object (the lesson: both clients echo the
model), whether the SuperLink takes the second copy depends on timing: it does not when
the first copy is stored and not yet collected by the ServerApp as the second reply
arrives (``link_bytes``), it does when both are pushed at once (``wire_bytes``). With the
packed layout the payload is one object, so the count is one or the other, to the byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcomp.engines.deployment.engine import DEPLOYMENT_FILE
from fedcomp.engines.launch import execute
from tests.helpers import run_config

#: Id fields of a message's metadata that may differ in varint length between two runs,
#: each written twice (the Message object and the envelope), one byte each.
ID_JITTER_PER_MESSAGE = 2 * 5


def _both(tmp_path: Path, *overrides: str) -> tuple[dict, dict, dict]:
    simulated = execute(run_config(tmp_path / "simulation", "engine=inprocess", *overrides))
    deployed = execute(run_config(tmp_path / "deployment", "engine=deployment", *overrides))
    record = json.loads((tmp_path / "deployment" / DEPLOYMENT_FILE).read_text())
    return simulated, deployed, record["agreement"]


def _check(simulated: dict, deployed: dict, agreement: dict, messages: int) -> None:
    for direction in ("down", "up"):
        counted = agreement[direction]["model_counted"]
        link, wire = deployed["bytes"][direction]["link_bytes"], deployed["bytes"][direction]["wire_bytes"]
        assert link == agreement[direction]["ledger_link"]
        # the deployment's ledger predicts what its SuperLink counted, to the byte: the
        # link bytes, or (when duplicate replies raced) the wire bytes
        assert counted in (link, wire), (direction, counted, link, wire)
        # the simulation predicts the same within the ids' varint lengths
        predicted = simulated["bytes"][direction]["link_bytes" if counted == link else "wire_bytes"]
        assert abs(predicted - counted) <= ID_JITTER_PER_MESSAGE * messages, (direction, predicted, counted)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compressed_downlink_topk_link_is_predicted(tmp_path: Path) -> None:
    overrides = (
        "task=digits", "partition=iid", "federation.num_clients=2", "federation.fraction_fit=1.0",
        "federation.num_rounds=2", "compressor=topk", "compressor.downlink=true",
    )  # fmt: skip
    simulated, deployed, agreement = _both(tmp_path, *overrides)
    _check(simulated, deployed, agreement, messages=4)
    # every SuperNode pulls the shared downlink itself: nothing is saved down
    assert simulated["bytes"]["down"]["link_bytes"] == simulated["bytes"]["down"]["wire_bytes"]


@pytest.mark.extended
@pytest.mark.timeout(1500)
def test_the_lesson_link_is_predicted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two clients echo the same Pythia-14M model: the SuperLink keeps the first reply's
    payload record and never takes the second one's (timing permitting: both replies must
    arrive before the ServerApp collects the first, which its 3 s polling makes the rule)."""
    simulated, deployed, agreement = _both(tmp_path, "experiment=lesson_bandwidth")
    _check(simulated, deployed, agreement, messages=2)
    dense = simulated["formula"]["bytes_down"]
    assert simulated["bytes"]["up"]["wire_bytes"] > 2 * dense > simulated["bytes"]["up"]["link_bytes"] > dense
    assert "link (SuperLink)" in capsys.readouterr().out
