"""fedcomp.pretrain: central pretraining on the public split -> a loadable checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from fedcomp.pretrain import pretrain
from fedcomp.tasks.checkpoint import load_checkpoint
from fedcomp.tasks.digits import DigitsTask

CONF = Path(__file__).resolve().parent.parent / "conf"


def compose_pretrain(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="pretrain", overrides=list(overrides))


def test_pretrain_digits_checkpoint_loads(tmp_path, capsys):
    out = tmp_path / "ckpt" / "digits.pt"
    cfg = compose_pretrain("task=digits", "pretrain.epochs=1", f"pretrain.output={out}")
    summary = pretrain(cfg)
    printed = capsys.readouterr().out
    assert str(out) in printed and "accuracy=" in printed
    assert out.is_file()
    meta = json.loads(out.with_name("digits.pt.json").read_text())
    assert meta["public_examples"] == 150 and meta["epochs"] == 1
    assert 0 <= summary["test"]["accuracy"] <= 1
    model = load_checkpoint(DigitsTask().build_model(), out)
    acc = DigitsTask().evaluate(model, DigitsTask().test_dataset())["accuracy"]
    assert abs(acc - summary["test"]["accuracy"]) < 1e-9
    # the federated run's round-0 model is the pretrained one
    start = DigitsTask(checkpoint=str(out)).initial_model()
    assert torch.equal(start.fc2.weight, model.fc2.weight)


def test_pretrain_config_extends_main_config():
    cfg = compose_pretrain("task=digits")
    assert cfg.pretrain.epochs >= 1 and cfg.pretrain.output is None
    assert "federation" in cfg and cfg.task._target_.endswith("DigitsTask")


def test_cli_default_output_path(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fedcomp.pretrain", "task=digits", "pretrain.steps=2",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/checkpoints/digits.pt" in proc.stdout
    load_checkpoint(DigitsTask().build_model(), tmp_path / "results" / "checkpoints" / "digits.pt")


def test_pretrain_then_federate_with_frozen_layers(tmp_path):
    """Pretrain centrally, then federate from the checkpoint with the conv layers frozen."""
    import pandas as pd

    from fedcomp.engines.launch import execute
    from tests.helpers import run_config

    ckpt = tmp_path / "digits.pt"
    pretrain(compose_pretrain("task=digits", "pretrain.epochs=2", f"pretrain.output={ckpt}"))
    run_dir = tmp_path / "run"
    summary = execute(run_config(
        run_dir, "task=digits", "partition=iid", "federation.num_clients=2",
        "federation.fraction_fit=1.0", "federation.num_rounds=1", "compressor=freeze_convs",
        f"task.checkpoint={ckpt}",
    ))
    assert summary["model"]["checkpoint"] == str(ckpt)
    assert summary["model"]["frozen"] == ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]
    frozen_values = 8 * 9 + 8 + 16 * 8 * 9 + 16  # conv1 and conv2 of the digits CNN
    sent = 4 * (summary["model"]["total_values"] - frozen_values)
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    server = ledger[ledger.recorded_by == "server"]
    # frozen layers are sent in neither direction: the model down is the raw trained
    # tensors (+2 B of packed format); the update up adds Freeze's small packed header
    down, up = server[server.direction == "down"], server[server.direction == "up"]
    assert (down["payload_bytes"] == sent + 2).all()
    assert ((up["payload_bytes"] > sent) & (up["payload_bytes"] < sent + 100)).all()
    assert (server["dense_bytes"] == 4 * summary["model"]["total_values"]).all()
    # round 0 is the pretrained model itself: central accuracy equals the checkpoint's
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    start = metrics[(metrics["round"] == 0) & (metrics.metric == "accuracy")]["value"].item()
    model = load_checkpoint(DigitsTask().build_model(), ckpt)
    assert abs(start - DigitsTask().evaluate(model, DigitsTask().test_dataset())["accuracy"]) < 1e-9


@pytest.mark.parametrize(
    "override, expected",
    [
        ("task.model=foo", "error: task.model: must be one of cnn, fedavg_cnn, 2nn, got 'foo'"),
        ("pretrain.epochs=0", "error: pretrain.epochs: must be an integer >= 1, got 0"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, override, expected):
    result = subprocess.run(
        [sys.executable, "-m", "fedcomp.pretrain", "task=mnist", override, f"pretrain.output={tmp_path / 'm.pt'}"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "m.pt").exists()
