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
