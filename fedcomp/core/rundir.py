"""Run directories: the four result files, written atomically and checked on reading.

A run directory is complete when ``config.yaml``, ``ledger.parquet``,
``metrics.parquet`` and ``summary.json`` all exist, read back, and agree with the
SHA-256 and size ``summary.json`` records for the other three (``summary["files"]``).
Each is written to a temporary file in the same directory and moved into place with
``os.replace``, and ``summary.json`` is written last, so an interrupted run never looks
complete and a file is never half-written; a file changed or truncated afterwards
fails its checksum, so resume redoes the run instead of trusting it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fedcomp.core.errors import one_line
from fedcomp.core.files import write_json, write_parquet, write_text

CONFIG_FILE = "config.yaml"
LEDGER_FILE = "ledger.parquet"
METRICS_FILE = "metrics.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE)
#: The ledger columns every run holds (the DESIGN.md contract; later columns are optional).
LEDGER_REQUIRED = ("run_id", "round", "phase", "partition_id", "node_id", "direction", "recorded_by",
                   "dense_bytes", "payload_bytes", "wire_bytes", "status")
#: The columns of ``metrics.parquet``.
METRICS_REQUIRED = ("run_id", "round", "scope", "metric", "value")


#: The files whose checksums ``summary.json`` records.
CHECKED_FILES = (CONFIG_FILE, LEDGER_FILE, METRICS_FILE)


def is_complete(run_dir: str | os.PathLike[str]) -> bool:
    """True when ``run_dir`` holds a complete run that reads back (:func:`check_run`)."""
    return check_run(run_dir) is None


def write_run(
    run_dir: Path,
    config_yaml: str,
    ledger: pd.DataFrame,
    metrics: pd.DataFrame,
    summary: dict[str, Any],
) -> None:
    """Write the four files of a run; ``summary.json`` last marks the run complete.

    ``summary["files"]`` is set to each other file's SHA-256, size and row count, read
    back from disk after writing (:func:`verify_files` checks them).
    """
    (run_dir / SUMMARY_FILE).unlink(missing_ok=True)
    write_text(run_dir / CONFIG_FILE, config_yaml)
    write_parquet(run_dir / LEDGER_FILE, ledger)
    write_parquet(run_dir / METRICS_FILE, metrics)
    rows = {CONFIG_FILE: None, LEDGER_FILE: len(ledger), METRICS_FILE: len(metrics)}
    summary["files"] = {name: {**file_digest(run_dir / name), "rows": rows[name]} for name in CHECKED_FILES}
    write_json(run_dir / SUMMARY_FILE, summary)


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": hex digest, "bytes": size}`` of the file at ``path``."""
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def verify_files(run_dir: Path, summary: dict[str, Any]) -> None:
    """Check the files of ``run_dir`` against the checksums ``summary["files"]`` records.

    Raises
    ------
    RunError
        When the record is missing (a summary written before checksums were recorded,
        or not by fedcomp) or a file's size or SHA-256 differs (changed or truncated).
    """
    record = summary.get("files")
    if not isinstance(record, dict) or any(not isinstance(record.get(n), dict) for n in CHECKED_FILES):
        raise RunError(f"{SUMMARY_FILE} records no checksums of {', '.join(CHECKED_FILES)}")
    for name in CHECKED_FILES:
        found = file_digest(run_dir / name)
        expected = record[name]
        if found["bytes"] != expected.get("bytes"):
            raise RunError(f"{name} has {found['bytes']:,} bytes, {SUMMARY_FILE} recorded {expected.get('bytes')} "
                           "(truncated or changed after the run)")
        if found["sha256"] != expected.get("sha256"):
            raise RunError(f"{name} does not match the SHA-256 {SUMMARY_FILE} recorded (changed after the run)")


class RunError(Exception):
    """A run directory that cannot be used; the message says why (one line)."""


@dataclass
class RunFiles:
    """The four files of one run, read back.

    Attributes
    ----------
    path
        The run directory.
    config
        ``config.yaml``: the resolved config.
    ledger
        ``ledger.parquet``: every row, both recording sides.
    metrics
        ``metrics.parquet``: tidy metrics.
    summary
        ``summary.json``.
    """

    path: Path
    config: dict[str, Any]
    ledger: pd.DataFrame
    metrics: pd.DataFrame
    summary: dict[str, Any]


def load_run(run_dir: str | os.PathLike[str]) -> RunFiles:
    """Read the four files of a run and check they hold what the contract says.

    Resume and the report share this check, so a run counts as complete for one exactly
    when it does for the other.

    Raises
    ------
    RunError
        Saying why: a missing file (incomplete run), a file that does not read back
        (``unreadable ledger.parquet: ...``), the wrong top-level type or missing columns.
    """
    path = Path(run_dir)
    missing = [name for name in RUN_FILES if not (path / name).is_file()]
    if missing:
        raise RunError(f"incomplete run (missing {', '.join(missing)}; still running or interrupted)")
    config = _read(path / CONFIG_FILE, yaml.safe_load, yaml.YAMLError)
    summary = _read(path / SUMMARY_FILE, json.loads, json.JSONDecodeError)
    if not isinstance(config, dict):
        raise RunError(f"{CONFIG_FILE} is not a mapping")
    if not isinstance(summary, dict):
        raise RunError(f"{SUMMARY_FILE} is not a JSON object")
    verify_files(path, summary)
    frames = {}
    for name, required in ((LEDGER_FILE, LEDGER_REQUIRED), (METRICS_FILE, METRICS_REQUIRED)):
        try:
            frames[name] = pd.read_parquet(path / name)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise RunError(f"unreadable {name}: {one_line(str(err), 200)}") from err
        absent = [c for c in required if c not in frames[name].columns]
        if absent:
            raise RunError(f"{name} lacks the columns {', '.join(absent)}")
    return RunFiles(path, config, frames[LEDGER_FILE], frames[METRICS_FILE], summary)


def check_run(run_dir: str | os.PathLike[str]) -> str | None:
    """``None`` when the run at ``run_dir`` is complete and reads back; else the reason."""
    try:
        load_run(run_dir)
    except RunError as err:
        return str(err)
    return None


def _read(path: Path, parse: Callable[[str], Any], error: type[Exception]) -> Any:
    """``parse`` the UTF-8 text of ``path``; a :class:`RunError` naming the file if it fails."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, error) as err:
        raise RunError(f"unreadable {path.name}: {one_line(str(err), 200)}") from err
