"""Run directories: the four result files, written atomically.

A run directory is complete when ``config.yaml``, ``ledger.parquet``,
``metrics.parquet`` and ``summary.json`` all exist. Each is written to a temporary
file in the same directory and moved into place with ``os.replace``, and
``summary.json`` is written last, so an interrupted run never looks complete and a
file is never half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

CONFIG_FILE = "config.yaml"
LEDGER_FILE = "ledger.parquet"
METRICS_FILE = "metrics.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


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


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
