"""Find run directories, load them, and read what each run declares about itself.

A candidate run is any directory below the report's root (itself included) holding one
of the four run files; hidden directories (Hydra's ``.hydra/``) are not searched. A
candidate is loaded with :func:`fedcomp.core.rundir.load_run` (the same check resume
uses) and kept only when it also holds what the report reads (:func:`check_report_fields`);
every other candidate is listed with the reason (:class:`Skipped`).

Settings come from each run's ``config.yaml`` and ``summary.json``, never from directory
names or class names: the method is ``summary["compressor"]["label"]`` as the compressor
declared it, the baseline is the run whose ``summary["compressor"]["identity"]`` is true,
and its parameters are ``summary["compressor"]["params"]``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fedcomp.analysis.stats import DEFAULT_FINAL_WINDOW
from fedcomp.core import ledger as ledger_lib
from fedcomp.core.rundir import RUN_FILES, RunError, RunFiles, load_run

DIRECTIONS = ("down", "up")
#: Config keys that do not change what a run computes.
NOISE_KEYS = ("seed", "output_dir", "resume", "verbose", "report", "logger")
#: Config keys a compressed run may differ in from the identity run it is compared with.
COMPRESSOR_KEYS = ("compressor", "compressor_name")
#: The ``summary["formula"]`` entries the report reads.
FORMULA_KEYS = ("bytes_down", "bytes_up", "continuous_total", "cohort_down_total", "cohort_up_total")


class ReportError(Exception):
    """Input the report cannot work with (no run at all, a bad option); exit code 2."""


@dataclass(frozen=True)
class Skipped:
    """A candidate run directory left out of the report, and why."""

    path: Path
    reason: str


def find_run_dirs(root: Path) -> list[Path]:
    """Directories below ``root`` (itself included) that hold any of the four run files."""
    found: set[Path] = set()
    for name in RUN_FILES:
        for path in root.rglob(name):
            if any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
                continue  # .hydra/config.yaml and the like
            if path.is_file():
                found.add(path.parent)
    return sorted(found)


def check_report_fields(run: RunFiles) -> None:
    """Raise :class:`RunError` when a readable run lacks what the report needs."""
    fed = run.config.get("federation")
    if not isinstance(fed, dict) or not {"num_clients", "fraction_fit", "num_rounds"} <= fed.keys():
        raise RunError("config.yaml lacks federation.num_clients/fraction_fit/num_rounds")
    formula = run.summary.get("formula")
    if not isinstance(formula, dict) or not set(FORMULA_KEYS) <= formula.keys():
        raise RunError(f"summary.json lacks formula.{'/'.join(FORMULA_KEYS)}")
    totals = run.summary.get("bytes")
    if not isinstance(totals, dict) or not all(
        isinstance(totals.get(d), dict) and {"dense_bytes", "payload_bytes", "wire_bytes"} <= totals[d].keys()
        for d in (*DIRECTIONS, "total")
    ):
        raise RunError("summary.json lacks bytes.down/up/total with dense, payload and wire bytes")
    if not isinstance(run.summary.get("compressor"), dict):
        raise RunError("summary.json lacks the compressor's declaration (compressor.label, identity, params)")


def load_runs(root: Path) -> tuple[list[RunFiles], list[Skipped]]:
    """Every usable run below ``root`` and every candidate left out, with the reason."""
    root = Path(root)
    if not root.exists():
        raise ReportError(f"{root}: no such directory")
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    runs, skipped = [], []
    for run_dir in find_run_dirs(root):
        try:
            run = load_run(run_dir)
            check_report_fields(run)
        except RunError as err:
            skipped.append(Skipped(run_dir, str(err)))
            continue
        runs.append(run)
    return runs, skipped


def final_window(config: dict[str, Any], override: int | None = None) -> int:
    """Rounds averaged for the headline metric: ``override``, else ``report.final_window``.

    Raises
    ------
    ReportError
        When the value is not an integer >= 1 (naming ``report.final_window``).
    """
    value = override if override is not None else (config.get("report") or {}).get("final_window")
    if value is None:
        return DEFAULT_FINAL_WINDOW
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReportError(f"report.final_window: must be an integer >= 1, got {value!r}")
    return value


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as ``{"a.b": value}`` / ``{"a.0.b": value}``."""
    if isinstance(data, dict):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        items = enumerate(data)
    else:
        return {prefix[:-1]: json.dumps(data) if isinstance(data, list) else data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def config_identity(config: dict[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """The flattened config without the keys that do not change what a run computes.

    Seed, output directory, resume, verbosity, report and logger settings, and where the
    engine ran (its resources: every ``engine.*`` key but ``engine.name``) are left out,
    as is every top-level key in ``drop``. An empty list counts as absent: runs written
    before fedcomp added a list key with an empty default (``faults.examples``) stay one
    configuration with the runs written after.
    """
    drop = (*NOISE_KEYS, *drop)
    out = {}
    for key, value in flatten(config).items():
        top = key.split(".")[0]
        if top in drop or (top == "engine" and key != "engine.name") or value == "[]":
            continue
        out[key] = value
    return out


def short_hash(data: dict[str, Any]) -> str:
    """A 10-hex digest of a JSON-able dict (configuration ids)."""
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _name(section: Any) -> Any:
    """A config section's short name: its ``name`` or the last part of its ``_target_``."""
    if not isinstance(section, dict):
        return section
    target = section.get("_target_")
    return section.get("name") or (target.rsplit(".", 1)[-1] if isinstance(target, str) else None)


def settings(run: RunFiles) -> dict[str, Any]:
    """The settings of a run as table columns, read from its config and declarations.

    ``method`` is the compressor's own label and ``identity`` its own declaration;
    ``param.<name>`` holds each of its declared parameters (nested ones dotted).
    """
    cfg, summary = run.config, run.summary
    declared = summary["compressor"]
    fed, client = cfg["federation"], cfg.get("client") or {}
    partition = cfg.get("partition") or {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    row = {
        "task": cfg.get("task_name") or summary.get("task") or _name(cfg.get("task")),
        "compressor": summary.get("compressor_name") or cfg.get("compressor_name") or _name(cfg.get("compressor")),
        "method": declared.get("label") or summary.get("compressor_name") or "?",
        "identity": bool(declared.get("identity", False)),
        "error_feedback": declared.get("error_feedback"),
        "downlink": declared.get("downlink"),
        "model": task.get("model"),
        "checkpoint": Path(task["checkpoint"]).name if task.get("checkpoint") else None,
        "partition": _name(partition),
        "partition_alpha": partition.get("alpha") if isinstance(partition, dict) else None,
        "num_clients": fed.get("num_clients"),
        "fraction_fit": fed.get("fraction_fit"),
        "fraction_evaluate": fed.get("fraction_evaluate", 0.0),
        "num_rounds": fed.get("num_rounds"),
        "local_epochs": client.get("local_epochs"),
        "local_steps": client.get("local_steps"),
        "layout": (cfg.get("wire") or {}).get("layout"),
        "engine": _name(cfg.get("engine")),
        "seed": cfg.get("seed", summary.get("seed")),
    }
    params = declared.get("params") or {}
    row.update({f"param.{k}": v for k, v in flatten(params).items()} if params else {})
    return row


def measures_in(columns: Iterable[str]) -> list[str]:
    """The ledger's byte measures (:data:`fedcomp.core.ledger.MEASURES`) present in ``columns``."""
    present = set(columns)
    return [m for m in ledger_lib.MEASURES if m in present]


def server_rows(run: RunFiles) -> pd.DataFrame:
    """The ledger rows the server recorded (client rows duplicate them)."""
    return run.ledger[run.ledger["recorded_by"] == "server"]


def round_bytes(run: RunFiles) -> pd.DataFrame:
    """Server-side bytes per round and direction for every measure the ledger holds.

    All phases and failed rows count (their bytes were spent); ``messages`` counts rows,
    ``failed`` the failed ones.
    """
    rows = server_rows(run)
    measures = measures_in(rows.columns)
    rows = rows.assign(failed=(rows["status"] == "failed").astype("int64"))
    grouped = rows.groupby(["round", "direction"], as_index=False).agg(
        **{m: (m, "sum") for m in measures}, messages=("round", "size"), failed=("failed", "sum")
    )
    return grouped.astype({m: "int64" for m in measures})


def central_metrics(run: RunFiles) -> pd.DataFrame:
    """Central metrics as a ``round x metric`` frame (round 0 is the initial model)."""
    central = run.metrics[run.metrics["scope"] == "central"]
    if central.empty:
        return pd.DataFrame()
    return central.pivot_table(index="round", columns="metric", values="value", aggfunc="last").sort_index()


def choose_metric(available: Iterable[str], requested: str) -> str | None:
    """``requested`` when the run has it, else accuracy, perplexity or loss, in that order."""
    available = set(available)
    for name in (requested, "accuracy", "perplexity", "loss"):
        if name in available:
            return name
    return None


def values_up(run: RunFiles) -> int | None:
    """Values the clients sent up over the run: values per update × training replies.

    Values per update is ``summary["model"]["sent_values"]`` (the entries of the tensors
    that are not frozen); training replies are the server's ``train``/``up`` ledger rows.
    ``None`` when the summary does not record ``sent_values``.
    """
    sent = (run.summary.get("model") or {}).get("sent_values")
    if not sent:
        return None
    rows = server_rows(run)
    replies = int(((rows["phase"] == "train") & (rows["direction"] == "up")).sum())
    return int(sent) * replies
