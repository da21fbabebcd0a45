"""Run directories: the four result files, written atomically.

A run directory is complete when ``config.yaml``, ``ledger.parquet``,
``metrics.parquet`` and ``summary.json`` all exist. Each is written to a temporary
file in the same directory and moved into place with ``os.replace``, and
``summary.json`` is written last, so an interrupted run never looks complete and a
file is never half-written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from fedcomp.core.files import write_json, write_parquet, write_text

CONFIG_FILE = "config.yaml"
LEDGER_FILE = "ledger.parquet"
METRICS_FILE = "metrics.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE)


def is_complete(run_dir: str | os.PathLike[str]) -> bool:
    """True when all four result files exist in ``run_dir``."""
    return all((Path(run_dir) / name).is_file() for name in RUN_FILES)


def write_run(
    run_dir: Path,
    config_yaml: str,
    ledger: pd.DataFrame,
    metrics: pd.DataFrame,
    summary: dict[str, Any],
) -> None:
    """Write the four files of a run; ``summary.json`` last marks the run complete."""
    (run_dir / SUMMARY_FILE).unlink(missing_ok=True)
    write_text(run_dir / CONFIG_FILE, config_yaml)
    write_parquet(run_dir / LEDGER_FILE, ledger)
    write_parquet(run_dir / METRICS_FILE, metrics)
    write_json(run_dir / SUMMARY_FILE, summary)
