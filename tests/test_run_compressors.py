"""Every compressor runs end to end and the ledger shows what it saves."""

from pathlib import Path

import pytest

from fedcomp.config import CONF_DIR
from fedcomp.engines.launch import execute
from tests.helpers import load_run, run_config

# freeze_embeddings and lora* need a language model (task=pythia14m; tests/tasks/test_adapters.py)
ALL = sorted(p.stem for p in (CONF_DIR / "compressor").glob("*.yaml")
             if p.stem != "freeze_embeddings" and not p.stem.startswith("lora"))
FAST = ["topk", "quant4", "freeze_topk_quant8"]
SMALL = ("task=digits", "partition=iid", "federation.num_clients=2", "federation.fraction_fit=1.0",
         "federation.num_rounds=2")


def _check(tmp_path: Path, name: str, *extra: str) -> dict:
    summary = execute(run_config(tmp_path, *SMALL, f"compressor={name}", *extra))
    ledger, metrics, _ = load_run(tmp_path)
    up = ledger[(ledger.recorded_by == "server") & (ledger.direction == "up")]
    assert summary["num_failures"] == 0
    assert (up["status"] == "ok").all()
    assert summary["bytes"]["up"]["dense_bytes"] == summary["formula"]["cohort_up_total"]
    up_bytes = summary["bytes"]["up"]
    if name == "none":
        assert up_bytes["payload_bytes"] == up_bytes["dense_bytes"] + 2 * len(up)  # + the packed model kind
    elif name in ("lossless", "threshold"):
        # no saving promised: zstd of fp32 noise; early updates mostly exceed the threshold
        assert up_bytes["payload_bytes"] <= up_bytes["dense_bytes"] + 64 * len(up)
    elif name == "freeze_convs":
        assert up_bytes["payload_bytes"] < up_bytes["dense_bytes"]  # the convs are a small part here
    elif name in ("fp16", "bf16"):
        assert 0.5 * up_bytes["dense_bytes"] < up_bytes["payload_bytes"] < 0.5 * up_bytes["dense_bytes"] + 200 * len(up)
    else:
        assert up_bytes["payload_bytes"] < 0.5 * up_bytes["dense_bytes"]
    if name not in ("none", "lossless", "threshold", "freeze_convs"):
        # Flower's framing (about 835 B per reply) weighs on a 39 KB model
        assert up_bytes["wire_bytes"] < 0.75 * up_bytes["dense_bytes"]
    accuracy = metrics[(metrics.scope == "central") & (metrics.metric == "accuracy")]
    assert sorted(accuracy["round"]) == [0, 1, 2]
    return summary


@pytest.mark.parametrize("name", FAST)
def test_compressor_runs_and_saves_uplink_bytes(tmp_path, name):
    _check(tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in ALL if name not in FAST])
def test_every_compressor_runs_on_digits(tmp_path, name):
    _check(tmp_path, name)


def test_downlink_compression_saves_downlink_bytes(tmp_path):
    summary = _check(tmp_path, "quant8", "compressor.downlink=true")
    down = summary["bytes"]["down"]
    assert down["payload_bytes"] < 0.3 * down["dense_bytes"]


MNIST = ("task=mnist", "partition=dirichlet", "federation.num_clients=4", "federation.fraction_fit=0.5",
         "federation.num_rounds=2")


@pytest.mark.extended
@pytest.mark.parametrize("name", ALL)
def test_every_compressor_runs_on_mnist(tmp_path, name):
    """Accuracy per round in metrics.parquet and the uplink saving, on the default task."""
    summary = execute(run_config(tmp_path, *MNIST, f"compressor={name}"))
    _, metrics, _ = load_run(tmp_path)
    accuracy = metrics[(metrics.scope == "central") & (metrics.metric == "accuracy")]
    assert sorted(accuracy["round"]) == [0, 1, 2]
    assert summary["num_failures"] == 0
    up = summary["bytes"]["up"]
    assert up["dense_bytes"] == summary["formula"]["cohort_up_total"]
    replies = up["dense_bytes"] // (4 * 20_522)  # the default CNN's fp32 update
    if name == "none":
        assert up["payload_bytes"] == up["dense_bytes"] + 2 * replies  # + the packed model kind (2 B)
    elif name in ("lossless", "freeze_convs", "threshold"):
        # zstd of fp32 noise; convs are 17% of the CNN; most early updates exceed |1e-3|
        assert up["payload_bytes"] < up["dense_bytes"]
    elif name in ("fp16", "bf16"):
        # half the bits, plus a packed header of about 100 B per reply
        assert 0.5 * up["dense_bytes"] < up["payload_bytes"] < 0.5 * up["dense_bytes"] + 200 * replies
    else:
        assert up["payload_bytes"] < 0.5 * up["dense_bytes"]
