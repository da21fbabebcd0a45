"""Helpers for tests that run real simulations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fedcomp.config import compose_config, to_container


def run_config(tmp_path: Path, *overrides: str) -> dict:
    """A resolved run config writing into ``tmp_path``."""
    return to_container(compose_config([*overrides, f"output_dir={tmp_path}"]))


def load_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """ledger, metrics and summary of a finished run."""
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    return ledger, metrics, summary


#: A fast digits federation: 4 clients, 3 of them per round, 2 rounds.
DIGITS_SMALL = (
    "task=digits",
    "partition=iid",
    "federation.num_clients=4",
    "federation.fraction_fit=0.75",
    "federation.num_rounds=2",
)


#: A CNN-shaped set of tensor names and shapes (conv*/fc*, like the image tasks' models)
#: for transform tests.
MNIST_SHAPES = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "fc1.weight": (128, 1600),
    "fc1.bias": (128,),
    "fc2.weight": (10, 128),
    "fc2.bias": (10,),
}
