"""``python -m fedcomp.report``: tables and figures from run, sweep or results directories.

Usage
-----
``python -m fedcomp.report RESULTS [--out DIR] [--target-accuracy 0.9] [--metric accuracy]``

``RESULTS`` is a run directory, a Hydra sweep directory or a whole ``results/`` tree.
Every directory below it that holds any of the four run files (``config.yaml``,
``ledger.parquet``, ``metrics.parquet``, ``summary.json``) is a candidate run; it is
loaded when all four exist (:func:`fedcomp.core.rundir.is_complete`) and skipped, with the
reason printed, otherwise. Hidden directories (Hydra's ``.hydra/``) are not searched.
Settings come from each run's ``config.yaml``, never from directory names.

Outputs (in ``--out``, default ``RESULTS/report/``)
---------------------------------------------------
``runs.csv`` / ``.md`` / ``.tex``
    One row per run (:func:`runs_table`). The CSV holds every column in plain units
    (bytes); the Markdown and LaTeX files hold the columns a reader needs
    (:data:`RUNS_VIEW`), bytes in MB (10^6 B).
``summary.csv`` / ``.md`` / ``.tex``
    One row per configuration, seeds pooled (:func:`summary_table`): ``<figure>`` (mean)
    and ``<figure>_ci95`` (half-width of the 95% Student-t interval) in the CSV; "mean ±
    ci" strings in Markdown and LaTeX.
``rounds.csv``, ``curves.csv``
    The tidy per-round frames the figures are drawn from (:func:`rounds_frame`,
    :func:`curves_frame`), so figures can be restyled from them.
figures
    ``accuracy_vs_bytes``, ``pareto``, ``bytes_per_round``, ``formula_vs_measured``
    (PNG at 200 dpi and PDF), see :mod:`fedcomp.plots`.

Definitions
-----------
traffic
    The ledger's ``recorded_by == "server"`` rows (client rows duplicate them), both
    phases (train and evaluate), failed rows included (their bytes were spent).
formula baseline
    :class:`fedcomp.core.formula.Estimate` from the run's own dense model size
    (``summary["formula"]["bytes_down"]``/``["bytes_up"]``) and its federation settings;
    the integer-cohort figures ``cohort_down_total`` / ``cohort_up_total`` are the
    uncompressed baseline per direction (what an uncompressed Flower run of the same
    config moves); the continuous formula total is reported beside it.
saved, ratio
    ``saved = baseline - measured``; ``saved_pct = 100 * saved / baseline``;
    ``ratio = baseline / measured payload`` (per direction and in total).
metric delta
    ``final metric of the run - final metric of the identity run`` with the same
    config except the compressor (task, task params, partition, federation, client,
    faults, evaluation all equal) and the same seed. Identity runs are those with
    ``compressor_name == "none"`` or an ``Identity`` transform. No match leaves the delta
    empty and says why in ``delta_note``; several matches (repeated runs) are averaged.
bytes to target
    Cumulative server-side traffic (down + up, all phases) at the end of the first round
    ``r`` whose central metric reaches the target (``>=`` for accuracy-like metrics,
    ``<=`` for loss and perplexity); round 0 (the initial model) counts 0 bytes.
    ``rounds_to_target = r``; NaN when never reached.
95% CI
    ``t(0.975, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``) over the seeds of one configuration; NaN for ``n = 1``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedcomp.core.formula import Estimate
from fedcomp.core.rundir import (
    CONFIG_FILE,
    LEDGER_FILE,
    METRICS_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    is_complete,
)

DIRECTIONS = ("down", "up")
MEASURES = ("dense", "payload", "wire")
LOWER_IS_BETTER = ("loss", "perplexity")
METRIC_FALLBACKS = ("accuracy", "perplexity", "loss")

# Config keys that do not change what a run computes (excluded from the config identity).
NOISE_KEYS = ("seed", "output_dir", "resume", "verbose")
# Keys a compressed run may differ in from the identity run it is compared with.
COMPRESSOR_KEYS = ("compressor", "compressor_name")

CONFIG_COLUMNS = [
    "task",
    "compressor",
    "transform",
    "density",
    "bits",
    "threshold",
    "error_feedback",
    "downlink",
    "compressor_params",
    "partition",
    "partition_alpha",
    "num_clients",
    "fraction_fit",
    "fraction_evaluate",
    "min_fit_clients",
    "num_rounds",
    "local_epochs",
    "local_steps",
    "checkpoint",
    "engine",
    "seed",
]


class ReportError(Exception):
    """Input the report cannot work with (no runs, unreadable directory)."""


@dataclass
class Run:
    """One complete run directory, loaded."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    ledger: pd.DataFrame  # server-side rows only
    metrics: pd.DataFrame


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Report:
    """Everything the report writes: tables, tidy per-round frames, notes."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    rounds: pd.DataFrame
    curves: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    target: float | None = None


# --------------------------------------------------------------------------- loading


def discover(root: Path) -> list[Path]:
    """Directories below ``root`` (itself included) holding any of the four run files."""
    found: set[Path] = set()
    for name in RUN_FILES:
        for path in root.rglob(name):
            rel = path.relative_to(root).parts[:-1]
            if any(part.startswith(".") for part in rel):
                continue  # .hydra/config.yaml and the like
            if path.is_file():
                found.add(path.parent)
    return sorted(found)


def load_run(run_dir: Path) -> Run:
    """Load a complete run; raise :class:`ReportError` saying why it cannot be used."""
    if not is_complete(run_dir):
        missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
        raise ReportError(f"incomplete run (missing {', '.join(missing)}; still running or interrupted)")
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"unreadable {CONFIG_FILE}: {err}") from err
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"unreadable {SUMMARY_FILE}: {err}") from err
    frames = {}
    for name in (LEDGER_FILE, METRICS_FILE):
        try:
            frames[name] = pd.read_parquet(run_dir / name)
        except Exception as err:  # pyarrow raises several types for damaged files
            raise ReportError(f"unreadable {name}: {err}") from err
    if not isinstance(config, dict):
        raise ReportError(f"{CONFIG_FILE} is not a mapping")
    if not isinstance(summary, dict):
        raise ReportError(f"{SUMMARY_FILE} is not a JSON object")
    fed = config.get("federation")
    if not isinstance(fed, dict) or not {"num_clients", "fraction_fit", "num_rounds"} <= fed.keys():
        raise ReportError(f"{CONFIG_FILE} lacks federation.num_clients/fraction_fit/num_rounds")
    if "bytes_down" not in (summary.get("formula") or {}):
        raise ReportError(f"{SUMMARY_FILE} lacks formula.bytes_down (the dense model size)")
    ledger = frames[LEDGER_FILE]
    needed = {"round", "direction", "recorded_by", "dense_bytes", "payload_bytes", "wire_bytes"}
    if not needed <= set(ledger.columns):
        raise ReportError(f"{LEDGER_FILE} lacks columns {sorted(needed - set(ledger.columns))}")
    metrics = frames[METRICS_FILE]
    if not {"round", "scope", "metric", "value"} <= set(metrics.columns):
        raise ReportError(f"{METRICS_FILE} lacks the columns round, scope, metric, value")
    ledger = ledger[ledger["recorded_by"] == "server"].copy()
    return Run(run_dir, config, summary, ledger, metrics)


def load_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    """All complete runs below ``root`` and the candidates skipped, with reasons."""
    root = Path(root)
    if not root.exists():
        raise ReportError(f"{root}: no such directory")
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    runs, skipped = [], []
    for run_dir in discover(root):
        try:
            runs.append(load_run(run_dir))
        except ReportError as err:
            skipped.append(Skipped(run_dir, str(err)))
    return runs, skipped


# --------------------------------------------------------------------------- config


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": value}``; lists as JSON strings."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list):
        return {prefix[:-1]: json.dumps(data, sort_keys=True, default=str)}
    return {prefix[:-1]: data}


def config_identity(config: dict[str, Any], drop: Iterable[str] = ()) -> dict[str, Any]:
    """Flattened config without run-only keys (seed, output dir, engine resources)."""
    flat = flatten(config)
    drop = tuple(NOISE_KEYS) + tuple(drop)
    out = {}
    for key, value in flat.items():
        top = key.split(".")[0]
        if top in drop or key in drop:
            continue
        if top == "engine" and key != "engine.name":
            continue  # where it ran (Ray address, CPUs), not what it computed
        out[key] = value
    return out


def _hash(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _find_key(data: Any, key: str) -> Any:
    """First non-null value of ``key`` anywhere in nested dicts/lists (chain stages)."""
    if isinstance(data, dict):
        if data.get(key) is not None:
            return data[key]
        children: Iterable[Any] = data.values()
    elif isinstance(data, list):
        children = data
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def _short_target(section: Any) -> Any:
    if isinstance(section, dict):
        if section.get("name"):
            return section["name"]
        target = section.get("_target_")
        return target.rsplit(".", 1)[-1] if isinstance(target, str) else None
    return section


def is_identity(config: dict[str, Any], summary: dict[str, Any]) -> bool:
    """The uncompressed baseline, as the compressor declared it in ``summary.json``."""
    declared = summary.get("compressor")
    return bool(declared.get("identity")) if isinstance(declared, dict) else False


def config_columns(run: Run) -> dict[str, Any]:
    """The settings of a run, as table columns (all read from ``config.yaml``)."""
    cfg, summary = run.config, run.summary
    comp = cfg.get("compressor") or {}
    fed = cfg.get("federation") or {}
    client = cfg.get("client") or {}
    partition = cfg.get("partition") or {}
    task_cfg = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    params = {k: v for k, v in comp.items() if k not in ("_target_", "error_feedback", "downlink")}
    return {
        "task": cfg.get("task_name") or summary.get("task") or _short_target(cfg.get("task")),
        "compressor": cfg.get("compressor_name") or summary.get("compressor_name") or _short_target(comp),
        "transform": (summary.get("compressor") or {}).get("label", _short_target(comp)),
        "density": _find_key(comp, "density"),
        "bits": _find_key(comp, "bits"),
        "threshold": _find_key(comp, "threshold"),
        "error_feedback": comp.get("error_feedback"),
        "downlink": comp.get("downlink"),
        "compressor_params": json.dumps(params, sort_keys=True, default=str) if params else "",
        "partition": _short_target(partition),
        "partition_alpha": partition.get("alpha") if isinstance(partition, dict) else None,
        "num_clients": fed.get("num_clients"),
        "fraction_fit": fed.get("fraction_fit"),
        "fraction_evaluate": fed.get("fraction_evaluate", 0.0),
        "min_fit_clients": fed.get("min_fit_clients", 1),
        "num_rounds": fed.get("num_rounds"),
        "local_epochs": client.get("local_epochs"),
        "local_steps": client.get("local_steps"),
        "checkpoint": Path(str(task_cfg["checkpoint"])).name if task_cfg.get("checkpoint") else None,
        "engine": _short_target(cfg.get("engine")),
        "seed": cfg.get("seed", summary.get("seed")),
    }


# --------------------------------------------------------------------------- figures of a run


def baseline(run: Run) -> Estimate:
    """The formula for the run's own dense model size and federation settings."""
    fed, formula = run.config["federation"], run.summary["formula"]
    return Estimate(
        bytes_down=int(formula["bytes_down"]),
        bytes_up=int(formula.get("bytes_up", formula["bytes_down"])),
        num_clients=int(fed["num_clients"]),
        fraction_fit=float(fed["fraction_fit"]),
        num_rounds=int(fed["num_rounds"]),
        fraction_evaluate=float(fed.get("fraction_evaluate", 0.0) or 0.0),
        min_fit_clients=int(fed.get("min_fit_clients", 1) or 1),
    )


def lower_is_better(metric: str) -> bool:
    return any(metric.endswith(name) for name in LOWER_IS_BETTER)


def central_metrics(run: Run) -> pd.DataFrame:
    """Central metrics as ``round x metric`` (one column per metric)."""
    central = run.metrics[run.metrics["scope"] == "central"]
    if central.empty:
        return pd.DataFrame()
    return central.pivot_table(index="round", columns="metric", values="value", aggfunc="last").sort_index()


def choose_metric(available: Iterable[str], requested: str) -> str | None:
    """``requested`` if the run has it, else the first of accuracy, perplexity, loss."""
    available = set(available)
    for name in (requested, *METRIC_FALLBACKS):
        if name in available:
            return name
    return None


def run_rounds(run: Run) -> pd.DataFrame:
    """Server-side bytes per round and direction (all phases, failed rows included)."""
    ledger = run.ledger
    cols = [f"{m}_bytes" for m in MEASURES]
    if ledger.empty:
        return pd.DataFrame(columns=["round", "direction", *cols, "messages", "failed"])
    failed = ledger["status"] == "failed" if "status" in ledger.columns else False
    ledger = ledger.assign(failed=np.asarray(failed, dtype=bool).astype(int) if "status" in ledger.columns else 0)
    grouped = ledger.groupby(["round", "direction"], as_index=False).agg(
        **{c: (c, "sum") for c in cols}, messages=("round", "size"), failed=("failed", "sum")
    )
    return grouped.astype({c: "int64" for c in cols})


def cumulative_bytes(rounds: pd.DataFrame, at_rounds: Iterable[int]) -> pd.DataFrame:
    """Cumulative down+up bytes at the end of each of ``at_rounds`` (round 0 → 0)."""
    cols = [f"{m}_bytes" for m in MEASURES]
    per_round = rounds.groupby("round")[cols].sum().sort_index().cumsum()
    at = sorted(set(int(r) for r in at_rounds))
    index = sorted(set(per_round.index.tolist()) | set(at) | {0})
    per_round = per_round.reindex(index).ffill().fillna(0)
    out = per_round.loc[at].reset_index()
    return out.rename(columns={c: f"cum_{c}" for c in cols})


def reach_target(curve: pd.DataFrame, metric: str, target: float) -> pd.Series | None:
    """First row of ``curve`` (sorted by round) whose ``value`` reaches ``target``."""
    values = curve["value"]
    hit = values <= target if lower_is_better(metric) else values >= target
    if not hit.any():
        return None
    return curve.loc[hit.idxmax()]


def run_record(run: Run, requested_metric: str, target: float | None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One row of the runs table, the run's per-round bytes and its metric curve."""
    cols = config_columns(run)
    est = baseline(run)
    rounds = run_rounds(run)
    row: dict[str, Any] = {"run_id": run.summary.get("run_id", run.path.name), "path": str(run.path)}
    row.update(cols)
    row["config_id"] = _hash(config_identity(run.config))
    row["is_identity"] = is_identity(run.config, run.summary)

    base = {"down": est.cohort_down_total, "up": est.cohort_up_total}
    base["total"] = base["down"] + base["up"]
    row["model_bytes"] = est.bytes_down
    for d in ("down", "up", "total"):
        row[f"baseline_{d}"] = base[d]
    train_share = est.num_clients * est.fraction_fit * est.num_rounds
    row["formula_continuous_down"] = est.bytes_down * train_share + est.evaluate_total
    row["formula_continuous_up"] = est.bytes_up * train_share
    row["formula_continuous_total"] = est.total
    row["formula_continuous_train_total"] = est.train_total

    measured: dict[str, dict[str, int]] = {}
    for d in DIRECTIONS:
        part = rounds[rounds["direction"] == d]
        measured[d] = {m: int(part[f"{m}_bytes"].sum()) for m in MEASURES}
    measured["total"] = {m: measured["down"][m] + measured["up"][m] for m in MEASURES}
    for d in ("down", "up", "total"):
        for m in MEASURES:
            row[f"{m}_{d}"] = measured[d][m]
    for m in ("payload", "wire"):
        for d in ("down", "up", "total"):
            saved = base[d] - measured[d][m]
            row[f"saved_{m}_{d}"] = saved
            row[f"saved_{m}_{d}_pct"] = 100.0 * saved / base[d] if base[d] else np.nan
    for d in ("down", "up", "total"):
        payload = measured[d]["payload"]
        row[f"ratio_{d}"] = base[d] / payload if payload else np.nan

    central = central_metrics(run)
    metric = choose_metric(central.columns, requested_metric)
    row["metric"] = metric
    curve = pd.DataFrame(columns=["round", "value"])
    if metric is not None:
        series = central[metric].dropna()
        curve = series.rename("value").rename_axis("round").reset_index()
        curve["round"] = curve["round"].astype(int)
        row["final_metric"] = float(series.iloc[-1]) if len(series) else np.nan
        row["final_round"] = int(series.index[-1]) if len(series) else np.nan
    else:
        final = run.summary.get("final_metrics") or {}
        metric = choose_metric(final, requested_metric)
        row["metric"] = metric
        row["final_metric"] = float(final[metric]) if metric else np.nan
        row["final_round"] = np.nan
    for extra in ("accuracy", "loss", "perplexity"):
        row[f"final_{extra}"] = (
            float(central[extra].dropna().iloc[-1])
            if extra in central.columns and central[extra].notna().any()
            else np.nan
        )

    if not curve.empty:
        cum = cumulative_bytes(rounds, curve["round"])
        curve = curve.merge(cum, on="round", how="left")
    else:
        curve = curve.assign(cum_dense_bytes=[], cum_payload_bytes=[], cum_wire_bytes=[])
    curve.insert(0, "metric", metric)
    curve.insert(0, "run_id", row["run_id"])

    row["target"] = np.nan
    row["bytes_to_target_payload"] = np.nan
    row["bytes_to_target_wire"] = np.nan
    row["rounds_to_target"] = np.nan
    row["target_reached"] = False
    if target is not None and metric == requested_metric and not curve.empty:
        row["target"] = target
        hit = reach_target(curve, metric, target)
        if hit is not None:
            row["bytes_to_target_payload"] = float(hit["cum_payload_bytes"])
            row["bytes_to_target_wire"] = float(hit["cum_wire_bytes"])
            row["rounds_to_target"] = int(hit["round"])
            row["target_reached"] = True

    row["num_failures"] = int(run.summary.get("num_failures", 0) or 0)
    row["failed_messages"] = int(rounds["failed"].sum()) if len(rounds) else 0
    row["wall_time_s"] = float(run.summary.get("wall_time_s", np.nan) or np.nan)
    rounds = rounds.copy()
    rounds.insert(0, "run_id", row["run_id"])
    return row, rounds, curve


# --------------------------------------------------------------------------- identity deltas


def add_identity_deltas(runs: list[Run], table: pd.DataFrame) -> list[str]:
    """Fill ``identity_final_metric``, ``metric_delta``, ``delta_note`` in place; return notes."""
    keys = [_hash(config_identity(r.config, drop=(*COMPRESSOR_KEYS, "engine"))) for r in runs]
    flats = [config_identity(r.config, drop=(*COMPRESSOR_KEYS, "engine")) for r in runs]
    table["identity_final_metric"] = np.nan
    table["identity_runs"] = 0
    table["metric_delta"] = np.nan
    table["delta_note"] = ""
    notes: list[str] = []
    identity_idx = [i for i in range(len(runs)) if table.at[i, "is_identity"]]
    for i in range(len(runs)):
        seed, task, metric = table.at[i, "seed"], table.at[i, "task"], table.at[i, "metric"]
        same = [j for j in identity_idx if keys[j] == keys[i] and table.at[j, "seed"] == seed]
        same = [j for j in same if table.at[j, "metric"] == metric and pd.notna(table.at[j, "final_metric"])]
        if same:
            ref = float(np.mean([table.at[j, "final_metric"] for j in same]))
            table.at[i, "identity_final_metric"] = ref
            table.at[i, "identity_runs"] = len(same)
            table.at[i, "metric_delta"] = table.at[i, "final_metric"] - ref
            if len(same) > 1:
                table.at[i, "delta_note"] = f"identity metric averaged over {len(same)} repeated identity runs"
            continue
        candidates = [j for j in identity_idx if table.at[j, "task"] == task and table.at[j, "seed"] == seed]
        if not candidates:
            why = f"no identity run (compressor none) of task {task} with seed {seed}"
        else:
            diffs = []
            for j in candidates:
                keys_all = set(flats[i]) | set(flats[j])
                diffs.append(sorted(k for k in keys_all if flats[i].get(k) != flats[j].get(k)))
            best = min(diffs, key=len)
            if best:
                why = (
                    f"no identity run with the same settings and seed {seed}; "
                    f"closest differs in {', '.join(best[:5])}{' ...' if len(best) > 5 else ''}"
                )
            else:
                why = f"identity run of seed {seed} has no {metric} metric"
        table.at[i, "delta_note"] = why
    missing = table[table["metric_delta"].isna()]
    if len(missing):
        notes.append(
            f"{len(missing)} run(s) have no matching identity run: their metric delta is left empty "
            "(see delta_note in runs.csv)."
        )
    return notes


# --------------------------------------------------------------------------- statistics


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


def t_quantile(dof: int, q: float = 0.975) -> float:
    """Student-t quantile (scipy; a table for q = 0.975 if scipy is missing)."""
    try:
        from scipy.stats import t

        return float(t.ppf(q, dof))
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn here
        if q != 0.975:
            raise
        return _T975[max(k for k in _T975 if k <= dof)]  # the next smaller dof: conservative


def mean_ci95(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, 95% Student-t half-width and n over the non-NaN ``values`` (NaN CI for n < 2)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    n = len(arr)
    if n == 0:
        return np.nan, np.nan, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, np.nan, 1
    half = t_quantile(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean, half, n


# --------------------------------------------------------------------------- tables

SUMMARY_FIGURES = [
    "model_bytes",
    "baseline_down",
    "baseline_up",
    "baseline_total",
    "formula_continuous_down",
    "formula_continuous_up",
    "formula_continuous_total",
    *[f"{m}_{d}" for m in MEASURES for d in ("down", "up", "total")],
    *[f"saved_{m}_{d}{p}" for m in ("payload", "wire") for d in ("down", "up", "total") for p in ("", "_pct")],
    "ratio_down",
    "ratio_up",
    "ratio_total",
    "final_metric",
    "metric_delta",
    "bytes_to_target_payload",
    "bytes_to_target_wire",
    "rounds_to_target",
    "num_failures",
    "wall_time_s",
]
# Figures whose count of non-empty values may be below the group's n.
PARTIAL_FIGURES = ("metric_delta", "bytes_to_target_payload", "rounds_to_target")

RUNS_VIEW = [
    "label", "seed", "baseline_total", "payload_up", "payload_total", "wire_total",
    "saved_payload_up_pct", "saved_payload_total_pct", "saved_wire_total_pct", "ratio_up",
    "metric", "final_metric", "metric_delta", "bytes_to_target_payload", "rounds_to_target",
    "num_failures",
]
SUMMARY_VIEW = [
    "label", "n", "baseline_total", "formula_continuous_total", "payload_up", "payload_total",
    "wire_total", "saved_payload_up_pct", "saved_payload_total_pct", "saved_wire_total_pct",
    "ratio_up", "metric", "final_metric", "metric_delta", "bytes_to_target_payload",
    "rounds_to_target", "num_failures",
]
HEADERS = {
    "baseline_total": "baseline total (MB)",
    "formula_continuous_total": "formula continuous (MB)",
    "payload_up": "payload up (MB)",
    "payload_total": "payload total (MB)",
    "wire_total": "wire total (MB)",
    "saved_payload_up_pct": "saved payload up %",
    "saved_payload_total_pct": "saved payload total %",
    "saved_wire_total_pct": "saved wire total %",
    "ratio_up": "ratio up",
    "final_metric": "final",
    "metric_delta": "delta vs identity",
    "bytes_to_target_payload": "payload to target (MB)",
    "rounds_to_target": "rounds to target",
    "num_failures": "failures",
}


def add_labels(table: pd.DataFrame) -> None:
    """``label``: compressor plus the settings that vary within its task (not seed)."""
    own = ["density", "bits", "threshold", "error_feedback", "downlink"]  # compared within a compressor
    shared = [c for c in CONFIG_COLUMNS if c not in (*own, "task", "compressor", "transform", "seed",
                                                     "compressor_params")]
    labels = pd.Series("", index=table.index, dtype=object)
    for task, part in table.groupby("task", dropna=False):
        varying_shared = [c for c in shared if part[c].map(repr).nunique() > 1]
        for i, row in part.iterrows():
            same_comp = part[part["compressor"] == row["compressor"]]
            varying = [c for c in own if same_comp[c].map(repr).nunique() > 1] + varying_shared
            extras = []
            for c in varying:
                value = row[c]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                extras.append(f"{c}={value}")
            labels[i] = str(row["compressor"]) + (f" ({', '.join(extras)})" if extras else "")
        # configs that still collide (differ only in unshown keys) get their config id
        for label, same in part.groupby(labels[part.index]):
            if same["config_id"].nunique() > 1:
                for i in same.index:
                    labels[i] = f"{label} [{table.at[i, 'config_id']}]"
    table["label"] = labels


def runs_table(runs: list[Run], metric: str = "accuracy", target: float | None = 0.9) -> Report:
    """The per-run table, per-round frames and notes (summary filled by :func:`summary_table`)."""
    records, round_frames, curve_frames = [], [], []
    for run in runs:
        row, rounds, curve = run_record(run, metric, target)
        records.append(row)
        round_frames.append(rounds)
        curve_frames.append(curve)
    table = pd.DataFrame.from_records(records)
    notes = add_identity_deltas(runs, table)
    add_labels(table)
    first = ["run_id", "label"]
    last = ["identity_final_metric", "identity_runs", "metric_delta", "delta_note", "path"]
    middle = [c for c in table.columns if c not in first + last]
    figures_at = middle.index("final_round") + 1  # the delta right after the final metric
    table = table[first + middle[:figures_at] + last[:4] + middle[figures_at:] + last[4:]]
    ids = ["run_id", "task", "compressor", "label", "config_id", "seed"]
    rounds = pd.concat(round_frames, ignore_index=True) if round_frames else pd.DataFrame()
    rounds = table[ids].merge(rounds, on="run_id", how="right")
    curves = pd.concat([c for c in curve_frames if not c.empty] or [pd.DataFrame(columns=["run_id"])], ignore_index=True)
    curves = table[ids].merge(curves, on="run_id", how="right")

    tasks = sorted(table["task"].astype(str).unique())
    if len(tasks) > 1:
        notes.append(
            f"{len(tasks)} tasks in one report ({', '.join(tasks)}): deltas, Pareto fronts and "
            "figures are computed within each task, never across."
        )
    used = sorted(set(table["metric"].dropna()))
    if any(m != metric for m in used):
        notes.append(f"runs without central {metric!r} use {', '.join(m for m in used if m != metric)} instead; "
                     f"the target applies only to runs with {metric!r}.")
    if table["metric"].isna().any():
        notes.append(f"{int(table['metric'].isna().sum())} run(s) have no central metric at all.")
    for run, row in zip(runs, records):
        total = (run.summary.get("bytes") or {}).get("total") or {}
        if total and int(total.get("payload_bytes", row["payload_total"])) != row["payload_total"]:
            notes.append(f"{run.path}: summary.json payload total differs from the ledger; the ledger is used.")
    return Report(runs=table, summary=pd.DataFrame(), rounds=rounds, curves=curves, notes=notes,
                  metric=metric, target=target)


def group_columns(table: pd.DataFrame) -> list[str]:
    """A configuration is its ``config_id`` (the whole config but the seed) and metric."""
    return [c for c in ["label", "config_id", "metric"] if c in table.columns]


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Seeds pooled per configuration: mean, ``_ci95`` half-width and ``n`` per figure."""
    keys = group_columns(table)
    rows = []
    for _, part in table.groupby(keys, dropna=False, sort=False):
        first = part.iloc[0]
        row = {k: first[k] for k in [*keys, *CONFIG_COLUMNS] if k != "seed" and k in part.columns}
        row["n"] = len(part)
        row["seeds"] = ",".join(str(s) for s in sorted(part["seed"].tolist(), key=str))
        for fig in SUMMARY_FIGURES:
            if fig not in part.columns:
                continue
            mean, half, n = mean_ci95(pd.to_numeric(part[fig], errors="coerce"))
            row[fig] = mean
            row[f"{fig}_ci95"] = half
            if fig in PARTIAL_FIGURES:
                row[f"n_{fig}"] = n
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {"none": 0}
    out = out.sort_values(
        ["task", "compressor", "label"], key=lambda s: s.map(lambda v: (order.get(v, 1), str(v)))
    ).reset_index(drop=True)
    return out


# --------------------------------------------------------------------------- formatting


def _fmt_number(col: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return str(value)
    value = float(value)
    if col.startswith(("baseline", "formula", "payload", "wire", "dense", "saved", "bytes_to", "model_bytes")) and not col.endswith("_pct"):
        return f"{value / 1e6:.4g}"
    if col.endswith("_pct"):
        return f"{value:.1f}"
    if col.startswith("ratio"):
        return f"{value:.1f}"
    if col == "metric_delta":
        return f"{value:+.4f}"
    if col in ("final_metric", "identity_final_metric"):
        return f"{value:.4f}"
    if col in ("rounds_to_target", "num_failures", "n", "seed"):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _fmt_ci(col: str, mean: Any, half: Any) -> str:
    text = _fmt_number(col, mean)
    if not text:
        return ""
    if half is None or (isinstance(half, float) and math.isnan(half)):
        return text
    ci = _fmt_number(col, half).lstrip("+")
    return f"{text} ± {ci}"


def view(table: pd.DataFrame, columns: Sequence[str], with_ci: bool) -> pd.DataFrame:
    """A human table: selected columns formatted as strings (``mean ± ci`` when ``with_ci``)."""
    out = {}
    multi_task = table["task"].nunique() > 1 if "task" in table else False
    cols = (["task"] if multi_task else []) + [c for c in columns if c in table.columns]
    for col in cols:
        if with_ci and f"{col}_ci95" in table.columns:
            texts = [_fmt_ci(col, m, h) for m, h in zip(table[col], table[f"{col}_ci95"])]
            if f"n_{col}" in table.columns:
                texts = [
                    f"{t} ({k}/{n})" if t and k < n else t
                    for t, k, n in zip(texts, table[f"n_{col}"], table["n"])
                ]
        else:
            texts = [_fmt_number(col, v) for v in table[col]]
        out[HEADERS.get(col, col)] = texts
    return pd.DataFrame(out)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table (no ``tabulate`` dependency)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(frame: pd.DataFrame, caption: str = "") -> str:
    """A booktabs table via pandas' Styler; ``±`` becomes ``$\\pm$``."""
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis="columns")
    text = styler.to_latex(hrules=True, column_format="l" * len(frame.columns), caption=caption or None)
    return text.replace("±", r"$\pm$")


# --------------------------------------------------------------------------- synthetic runs


def write_synthetic_run(
    run_dir: Path,
    *,
    task: str = "mnist",
    compressor: str = "none",
    seed: int = 0,
    metric_values: Sequence[float] = (0.1, 0.5, 0.8, 0.9),
    metric: str = "accuracy",
    model_bytes: int = 1000,
    up_payload: int | None = None,
    down_payload: int | None = None,
    wire_overhead: int = 100,
    num_clients: int = 4,
    fraction_fit: float = 0.5,
    fraction_evaluate: float = 0.0,
    min_fit_clients: int = 1,
    local_epochs: int = 1,
    alpha: float = 0.5,
    compressor_params: dict[str, Any] | None = None,
    failed: Sequence[tuple[int, int]] = (),
) -> Path:
    """Write a small, hand-checkable run directory (the four files) for tests and demos.

    Rounds: ``len(metric_values) - 1`` (``metric_values[r]`` is the central metric after
    round ``r``, round 0 = the initial model). Every round the integer cohort of
    :class:`~fedcomp.core.formula.Estimate` trains: one ``down`` message of ``down_payload``
    (default ``model_bytes``) and one ``up`` message of ``up_payload`` (default
    ``model_bytes``) per client, dense ``model_bytes`` each, wire = payload +
    ``wire_overhead``; evaluation messages carry the model down and a metrics-only reply
    (wire ``wire_overhead``) up. Rows are written for the server and again for the
    client side. ``failed`` lists ``(round, partition_id)`` uplinks marked failed.
    """
    from fedcomp.core.rundir import write_run

    num_rounds = len(metric_values) - 1
    up_payload = model_bytes if up_payload is None else up_payload
    down_payload = model_bytes if down_payload is None else down_payload
    est = Estimate(model_bytes, model_bytes, num_clients, fraction_fit, num_rounds,
                   fraction_evaluate=fraction_evaluate, min_fit_clients=min_fit_clients)
    run_id = f"{task}-{compressor}-{seed}-{run_dir.name}"
    rows = []

    def add(rnd: int, phase: str, pid: int, direction: str, dense: int, payload: int, status: str) -> None:
        for side in ("server", "client"):
            rows.append({
                "run_id": run_id, "round": rnd, "phase": phase, "partition_id": pid, "node_id": 1000 + pid,
                "direction": direction, "recorded_by": side, "dense_bytes": dense, "payload_bytes": payload,
                "wire_bytes": payload + wire_overhead, "status": status,
                "error": "failed" if status == "failed" else "",
            })

    for rnd in range(1, num_rounds + 1):
        for pid in range(est.fit_cohort):
            add(rnd, "train", pid, "down", model_bytes, down_payload, "ok")
            status = "failed" if (rnd, pid) in set(failed) else "ok"
            add(rnd, "train", pid, "up", model_bytes, up_payload, status)
        for pid in range(est.evaluate_cohort):
            add(rnd, "evaluate", pid, "down", model_bytes, down_payload, "ok")
            add(rnd, "evaluate", pid, "up", 0, 0, "ok")
    ledger = pd.DataFrame(rows).astype({"node_id": "uint64"})
    other = "loss" if metric != "loss" else "accuracy"
    metrics = pd.DataFrame(
        [(run_id, r, "central", metric, float(v)) for r, v in enumerate(metric_values)]
        + [(run_id, r, "central", other, 1.0 / (r + 1)) for r in range(num_rounds + 1)]
        + [(run_id, r, "federated", "train_loss", 1.0 / r) for r in range(1, num_rounds + 1)],
        columns=["run_id", "round", "scope", "metric", "value"],
    )
    comp = {"_target_": "fedcomp.compressors.identity.Identity" if compressor == "none"
            else f"fedcomp.compressors.{compressor}.{compressor.title()}",
            **(compressor_params or {}), "error_feedback": compressor != "none", "downlink": False}
    config = {
        "task": {"_target_": f"fedcomp.tasks.{task}.Task"},
        "compressor": comp,
        "partition": {"_target_": "fedcomp.data.dirichlet", "alpha": alpha},
        "engine": {"name": "simulation", "num_cpus": None},
        "seed": seed,
        "federation": {"num_clients": num_clients, "fraction_fit": fraction_fit,
                       "fraction_evaluate": fraction_evaluate, "num_rounds": num_rounds,
                       "min_fit_clients": min_fit_clients},
        "client": {"local_epochs": local_epochs, "local_steps": None, "train": True, "update": "delta"},
        "compressor_name": compressor,
        "task_name": task,
        "output_dir": str(run_dir),
    }
    server = ledger[ledger["recorded_by"] == "server"]
    totals = {d: {f"{m}_bytes": int(server.loc[server["direction"] == d, f"{m}_bytes"].sum()) for m in MEASURES}
              for d in DIRECTIONS}
    totals["total"] = {k: totals["down"][k] + totals["up"][k] for k in totals["down"]}
    summary = {
        "run_id": run_id, "task": task, "compressor_name": compressor,
        "compressor": {"label": compressor, "identity": compressor == "none", "params": compressor_params or {},
                       "error_feedback": compressor != "none", "downlink": False},
        "seed": seed,
        "bytes": totals,
        "formula": {"bytes_down": model_bytes, "bytes_up": model_bytes, "continuous_total": est.total,
                    "continuous_train_total": est.train_total, "cohort_fit": est.fit_cohort,
                    "cohort_evaluate": est.evaluate_cohort, "cohort_total": est.cohort_total,
                    "cohort_down_total": est.cohort_down_total, "cohort_up_total": est.cohort_up_total,
                    "lesson_rounding_mb": 0},
        "num_failures": len(failed), "failures": [{"round": r, "partition_id": p} for r, p in failed],
        "final_metrics": {metric: float(metric_values[-1])}, "num_rounds": num_rounds, "wall_time_s": 1.0,
    }
    write_run(Path(run_dir), yaml.safe_dump(config, sort_keys=False), ledger, metrics, summary)
    return Path(run_dir)


# --------------------------------------------------------------------------- driver


def build_report(root: Path, metric: str = "accuracy", target: float | None = 0.9) -> Report:
    """Load every run below ``root`` and compute all tables; raise ReportError when there is none."""
    runs, skipped = load_runs(Path(root))
    if not runs:
        detail = "".join(f"\n  skipped {s.path}: {s.reason}" for s in skipped)
        raise ReportError(
            f"{root}: no complete run found (a run directory holds {', '.join(RUN_FILES)}){detail}"
        )
    report = runs_table(runs, metric, target)
    report.summary = summary_table(report.runs)
    report.skipped = skipped
    return report


def write_tables(report: Report, out: Path) -> list[Path]:
    """runs/summary as CSV, Markdown and LaTeX; rounds and curves as CSV."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    runs_view = view(report.runs, RUNS_VIEW, with_ci=False)
    summary_view = view(report.summary, SUMMARY_VIEW, with_ci=True)
    target = f"; target {report.metric} {report.target:g}" if report.target is not None else ""
    for name, full, shown, caption in (
        ("runs", report.runs, runs_view, "fedcomp runs (bytes in MB)"),
        ("summary", report.summary, summary_view,
         f"fedcomp: mean $\\pm$ 95\\% CI over seeds (bytes in MB{target})"),
    ):
        paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"]
        full.to_csv(paths[0], index=False)
        paths[1].write_text(to_markdown(shown), encoding="utf-8")
        paths[2].write_text(to_latex(shown, caption=caption), encoding="utf-8")
        written += paths
    for name, frame in (("rounds", report.rounds), ("curves", report.curves)):
        frame.to_csv(out / f"{name}.csv", index=False)
        written.append(out / f"{name}.csv")
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fedcomp.report",
        description="Tables and figures (bytes vs the formula, accuracy cost) from fedcomp runs.",
    )
    parser.add_argument("results", type=Path, help="a run directory, a sweep directory or a results tree")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: RESULTS/report)")
    parser.add_argument("--target-accuracy", "--target", dest="target", type=float, default=0.9,
                        help="central metric value for bytes/rounds-to-target (default 0.9; "
                             "reached when >= for accuracy, <= for loss/perplexity)")
    parser.add_argument("--metric", default="accuracy",
                        help="central metric for final value, delta and target (default accuracy; runs "
                             "without it fall back to perplexity, then loss)")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or args.results / "report"
    try:
        report = build_report(args.results, args.metric, args.target)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    written = write_tables(report, out)
    if not args.no_figures:
        from fedcomp.analysis import figures as plots

        written_figs, fig_notes = plots.make_all(report, out)
        written += written_figs
        report.notes += fig_notes
    n_cfg = len(report.summary)
    print(f"fedcomp report: {len(report.runs)} run(s), {n_cfg} configuration(s) from {args.results}")
    print()
    print(to_markdown(view(report.summary, SUMMARY_VIEW, with_ci=True)))
    if report.skipped:
        print(f"skipped {len(report.skipped)} directory(ies):")
        for s in report.skipped:
            print(f"  {s.path}: {s.reason}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
