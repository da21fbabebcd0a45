"""The report's tables: one row per run, one per configuration (seeds pooled), the paper table.

Definitions
-----------
bytes
    Totals per direction are read from ``summary["bytes"]`` (computed once by
    :func:`fedcomp.core.ledger.totals` when the run was written), one column per byte
    measure of :data:`fedcomp.core.ledger.MEASURES` the run recorded: ``dense_up``,
    ``payload_total``, ``wire_down``, ... (``link_*`` once the ledger has it).
framing
    ``wire - payload`` per direction: what Flower's message format adds to the arrays;
    ``framing_per_msg_<d>`` divides it by the server-side messages of that direction.
ratio
    ``ratio_<measure>_<d> = dense_<d> / <measure>_<d>``: how many times smaller than
    uncompressed fp32 the traffic of that direction was (``ratio_wire_up``,
    ``ratio_wire_total``, ...).
bits per entry
    ``8 · payload_up / values sent up`` (:func:`fedcomp.analysis.runs.values_up`).
formula
    ``baseline_<d>``: the formula's integer-cohort bytes (what an uncompressed Flower run
    of the same config moves); ``formula_continuous_total``: the continuous formula.
headline metric
    The central metric (``--metric``, else accuracy, perplexity, loss) averaged over the
    last ``final_window`` rounds (:func:`fedcomp.analysis.stats.headline`);
    ``last_round`` is the last round's value.
delta
    ``headline - headline of the identity run`` with the same config except the
    compressor (task, partition, federation, client, faults, ... equal) and the same
    seed, both over the same window; several matching identity runs are averaged. No
    match leaves it empty and ``delta_note`` says why.
to target
    Cumulative server-side bytes (down + up, all phases) at the end of the first round
    whose central metric reaches ``target`` (``>=``, or ``<=`` for loss and perplexity);
    round 0 counts 0 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fedcomp.analysis import runs as R
from fedcomp.analysis.stats import NON_NEGATIVE, Bounds, delta_bounds, headline, mean_ci, metric_bounds, reached
from fedcomp.core import ledger as ledger_lib
from fedcomp.core.rundir import RUN_FILES, RunFiles

SPANS = ("down", "up", "total")
#: Run-table columns averaged over seeds in the summary (prefix match).
FIGURE_PREFIXES = (
    "model_bytes", "baseline_", "formula_", "dense_", "payload_", "wire_", "link_", "request_",
    "framing_", "ratio_", "bits_per_entry", "headline", "last_round", "delta", "rounds_to_target",
    "num_failures", "wall_time_s",
)


@dataclass
class Report:
    """Everything the report writes: tables, tidy per-round frames, what it left out."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    paper: pd.DataFrame
    rounds: pd.DataFrame
    curves: pd.DataFrame
    metric: str
    target: float | None
    skipped: list[R.Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def short(measure: str) -> str:
    """``"wire_bytes"`` -> ``"wire"``."""
    return measure.removesuffix("_bytes")


def byte_columns(run: RunFiles) -> dict[str, Any]:
    """Bytes per direction from ``summary.json``, framing, ratios and the formula baseline."""
    totals, formula = run.summary["bytes"], run.summary["formula"]
    measures = [m for m in ledger_lib.MEASURES if all(m in totals[d] for d in SPANS)]
    row: dict[str, Any] = {"model_bytes": int(formula["bytes_down"])}
    base = {"down": int(formula["cohort_down_total"]), "up": int(formula["cohort_up_total"])}
    base["total"] = base["down"] + base["up"]
    row.update({f"baseline_{d}": base[d] for d in SPANS})
    row["formula_continuous_total"] = float(formula["continuous_total"])
    server = R.server_rows(run)
    for d in SPANS:
        row.update({f"{short(m)}_{d}": int(totals[d][m]) for m in measures})
        row[f"framing_{d}"] = row[f"wire_{d}"] - row[f"payload_{d}"]
        for m in (m for m in measures if m != "dense_bytes"):
            measured = row[f"{short(m)}_{d}"]
            row[f"ratio_{short(m)}_{d}"] = row[f"dense_{d}"] / measured if measured else np.nan
    for d in R.DIRECTIONS:
        row[f"messages_{d}"] = int((server["direction"] == d).sum())
        row[f"framing_per_msg_{d}"] = row[f"framing_{d}"] / row[f"messages_{d}"] if row[f"messages_{d}"] else np.nan
    values = R.values_up(run)
    row["bits_per_entry_up"] = 8 * row["payload_up"] / values if values else np.nan
    floor = run.summary.get("floor")
    row["floor_bytes"] = floor if isinstance(floor, (int, float)) and not isinstance(floor, bool) else np.nan
    return row


def metric_columns(
    run: RunFiles, rounds: pd.DataFrame, requested: str, window: int, target: float | None
) -> tuple[dict, pd.DataFrame]:
    """Headline and last-round metric, target figures, and the run's curve with cumulative
    bytes (``rounds``: :func:`fedcomp.analysis.runs.round_bytes` of the run)."""
    central = R.central_metrics(run)
    metric = R.choose_metric(central.columns, requested)
    row: dict[str, Any] = {"metric": metric, "final_window": window, "headline": np.nan, "window_used": 0,
                           "last_round": np.nan, "target": np.nan, "rounds_to_target": np.nan}
    measures = R.measures_in(rounds.columns)
    cum = rounds.groupby("round")[measures].sum().sort_index().cumsum()
    cum = cum.rename(columns={m: f"cum_{short(m)}" for m in measures})
    if metric is None:
        return row, pd.DataFrame(columns=["round", "metric", "value", *cum.columns])
    series = central[metric].dropna()
    row["headline"], row["window_used"] = headline(series, window)
    row["last_round"] = float(series.iloc[-1]) if len(series) else np.nan
    index = sorted(set(series.index) | set(cum.index) | {0})
    cum = cum.reindex(index).ffill().fillna(0).loc[series.index]
    curve = cum.assign(metric=metric, value=series).rename_axis("round").reset_index()
    if target is not None and metric == requested:
        row["target"] = target
        hit = curve[reached(curve["value"], metric, target)]
        if len(hit):
            row["rounds_to_target"] = int(hit.iloc[0]["round"])
            for col in cum.columns:
                row[f"{col.removeprefix('cum_')}_to_target"] = float(hit.iloc[0][col])
    return row, curve[["round", "metric", "value", *cum.columns]]


def run_record(
    run: RunFiles, metric: str, target: float | None, window: int | None
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One row of the runs table, the run's bytes per round and its metric curve."""
    run_id = str(run.path)  # unique in a report: directory names repeat across sweeps
    row: dict[str, Any] = {"run_id": run_id, **R.settings(run)}
    row["config_id"] = R.short_hash(R.config_identity(run.config))
    row.update(byte_columns(run))
    rounds = R.round_bytes(run)
    metrics, curve = metric_columns(run, rounds, metric, R.final_window(run.config, window), target)
    row.update(metrics)
    row["num_failures"] = int(run.summary.get("num_failures", 0) or 0)
    row["wall_time_s"] = float(run.summary.get("wall_time_s", np.nan) or np.nan)
    row["path"] = str(run.path)
    return row, rounds.assign(run_id=run_id), curve.assign(run_id=run_id)


def add_deltas(runs: list[RunFiles], table: pd.DataFrame, curves: pd.DataFrame) -> list[str]:
    """Fill ``identity_headline``, ``identity_runs``, ``delta``, ``delta_note``; return notes."""
    flats = [R.config_identity(r.config, drop=(*R.COMPRESSOR_KEYS, "engine")) for r in runs]
    keys = [R.short_hash(f) for f in flats]
    by_run = {rid: part.set_index("round")["value"] for rid, part in curves.groupby("run_id")}
    table[["identity_headline", "delta"]] = np.nan
    table["identity_runs"], table["delta_note"] = 0, ""
    identities = [i for i in table.index if table.at[i, "identity"]]
    for i in table.index:
        seed, metric, window = table.at[i, "seed"], table.at[i, "metric"], table.at[i, "final_window"]
        if pd.isna(metric):
            table.at[i, "delta_note"] = "the run recorded no central metric"
            continue
        same = [j for j in identities if keys[j] == keys[i] and table.at[j, "seed"] == seed
                and table.at[j, "metric"] == metric and table.at[j, "run_id"] in by_run]
        if same and pd.notna(table.at[i, "headline"]):
            ref = float(np.mean([headline(by_run[table.at[j, "run_id"]], window)[0] for j in same]))
            table.at[i, "identity_headline"], table.at[i, "identity_runs"] = ref, len(same)
            table.at[i, "delta"] = table.at[i, "headline"] - ref
            continue
        table.at[i, "delta_note"] = _no_identity_reason(i, table, identities, flats)
    unmeasured = int(table["metric"].isna().sum())
    missing = int(table["delta"].isna().sum()) - unmeasured
    notes = [f"{missing} run(s) have no matching identity run: their delta is left empty (delta_note in runs.csv)."]
    notes += [f"{unmeasured} run(s) recorded no central metric (nothing evaluated): no headline, no delta."]
    return [note for note, count in zip(notes, (missing, unmeasured)) if count]


def _no_identity_reason(i: int, table: pd.DataFrame, identities: list[int], flats: list[dict]) -> str:
    seed, task = table.at[i, "seed"], table.at[i, "task"]
    candidates = [j for j in identities if table.at[j, "task"] == task and table.at[j, "seed"] == seed]
    if not candidates:
        return f"no identity run of task {task} with seed {seed}"
    diffs = [sorted(k for k in set(flats[i]) | set(flats[j]) if flats[i].get(k) != flats[j].get(k))
             for j in candidates]
    best = min(diffs, key=len)
    if not best:
        return f"the identity run of seed {seed} has no {table.at[i, 'metric']} curve"
    more = " ..." if len(best) > 5 else ""
    return f"no identity run with the same settings and seed {seed}; closest differs in {', '.join(best[:5])}{more}"


def add_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``label``: the declared method, plus what tells configurations with that method apart.

    Within a task, configurations sharing a method label get the parameters (then the
    other settings) they differ in appended, e.g. ``top-k 1% +EF (local_epochs=2)``.
    Parameter columns are kept only where runs of one compressor differ in them.
    Returns the table with ``label`` added.
    """
    params = [c for c in table.columns if c.startswith("param.")]
    varying = [c for c in params if (table.groupby("compressor")[c].nunique(dropna=False) > 1).any()]
    table = table.drop(columns=[c for c in params if c not in varying])
    shown = [c for c in varying] + [c for c in SETTING_COLUMNS if c in table.columns]
    table["label"] = table["method"].astype(str)
    for _, part in table.groupby(["task", "method"], dropna=False):
        if part["config_id"].nunique() < 2:
            continue
        differ = [c for c in shown if part[c].map(repr).nunique() > 1]
        for i in part.index:
            extras = [f"{c.rsplit('.', 1)[-1]}={_plain(table.at[i, c])}" for c in differ]
            method = table.at[i, "method"]
            table.at[i, "label"] = f"{method} ({', '.join(extras)})" if extras else method
        for _, same in table.loc[part.index].groupby("label"):
            if same["config_id"].nunique() > 1:  # differ only in settings without a column
                table.loc[same.index, "label"] = same["label"] + " [" + same["config_id"] + "]"
    return table


SETTING_COLUMNS = ("error_feedback", "downlink", "model", "checkpoint", "partition", "partition_alpha", "num_clients",
                   "fraction_fit", "fraction_evaluate", "num_rounds", "local_epochs", "local_steps",
                   "layout", "engine")


def _plain(value: Any) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def runs_table(runs: list[RunFiles], metric: str, target: float | None, window: int | None) -> Report:
    """The per-run table and per-round frames (summary and paper tables filled by :func:`build`)."""
    records, round_frames, curve_frames = zip(*(run_record(r, metric, target, window) for r in runs))
    table = pd.DataFrame.from_records(list(records))
    curves = pd.concat(curve_frames, ignore_index=True)
    notes = add_deltas(runs, table, curves)
    table = add_labels(table)
    ids = ["run_id", "task", "method", "label", "identity", "config_id", "seed"]
    rounds = table[ids].merge(pd.concat(round_frames, ignore_index=True), on="run_id")
    curves = table[ids].merge(curves, on="run_id")
    short_runs = table[(table["window_used"] < table["final_window"]) & table["metric"].notna()]
    if len(short_runs):
        notes.append(f"{len(short_runs)} run(s) have fewer rounds than final_window; their headline "
                     "averages the rounds they have (window_used in runs.csv).")
    tasks = sorted(table["task"].astype(str).unique())
    if len(tasks) > 1:
        notes.append(f"{len(tasks)} tasks in one report ({', '.join(tasks)}): deltas and figures stay within a task.")
    used = sorted(set(table["metric"].dropna()) - {metric})
    if used:
        notes.append(f"runs without central {metric!r} use {', '.join(used)} instead; "
                     f"the target applies only to {metric!r}.")
    front = ["run_id", "task", "label", "method", "seed", "metric", "headline", "last_round", "delta"]
    table = table[front + [c for c in table.columns if c not in front and c != "path"] + ["path"]]
    return Report(runs=table, summary=pd.DataFrame(), paper=pd.DataFrame(), rounds=rounds, curves=curves,
                  metric=metric, target=target, notes=notes)


def bounds_for(column: str, metric: str) -> Bounds:
    """The range a figure can take (intervals are clipped to it)."""
    if column in ("headline", "last_round", "identity_headline"):
        return metric_bounds(metric)
    if column == "delta":
        return delta_bounds(metric)
    return NON_NEGATIVE


GROUP_KEYS = ["task", "label", "config_id", "metric", "final_window"]


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: ``n``, seeds, and per figure its mean, ``_ci95``
    (unclipped half-width) and ``_low``/``_high`` (clipped to the figure's range); ``n_<figure>``
    where some configuration has fewer values than runs (e.g. runs without a delta)."""
    figures = [c for c in table.columns if c.startswith(FIGURE_PREFIXES)
               and pd.api.types.is_numeric_dtype(table[c])]
    constant = [c for c in table.columns if c not in figures and c not in (*GROUP_KEYS, "run_id", "seed", "path")]
    rows = []
    for key, part in table.groupby(GROUP_KEYS, dropna=False, sort=False):
        row = dict(zip(GROUP_KEYS, key))
        row.update({c: part[c].iloc[0] for c in constant if part[c].map(repr).nunique() == 1})
        row["n"] = len(part)
        row["seeds"] = ",".join(sorted(map(str, part["seed"])))
        for col in figures:
            ci = mean_ci(part[col], bounds_for(col, str(row["metric"])))
            row.update({col: ci.mean, f"{col}_ci95": ci.half, f"{col}_low": ci.low,
                        f"{col}_high": ci.high, f"n_{col}": ci.n})
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.drop(columns=[f"n_{c}" for c in figures if (out[f"n_{c}"] == out["n"]).all()])
    order = out.assign(_base=~out["identity"].astype(bool)).sort_values(["task", "_base", "label"], kind="stable")
    return order.drop(columns="_base").reset_index(drop=True)


PAPER_FIGURES = ("bits_per_entry_up", "ratio_wire_up", "ratio_wire_total", "headline", "delta")


def paper_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The compact table for a paper, in numbers: method, bits per entry, uplink and total
    ratio on the wire, headline metric and delta with their clipped intervals, ``n``."""
    cols = ["task", "label", "identity", "metric", "final_window", "n"]
    for fig in PAPER_FIGURES:
        cols += [fig, f"{fig}_low", f"{fig}_high", f"{fig}_ci95", f"n_{fig}"]
    return summary[[c for c in cols if c in summary.columns]].copy()


def build(runs: list[RunFiles], skipped: list[R.Skipped], metric: str = "accuracy",
          target: float | None = None, window: int | None = None) -> Report:
    """Runs, summary and paper tables of ``runs``; notes for what is missing or mixed."""
    if not runs:
        detail = "".join(f"\n  skipped {s.path}: {s.reason}" for s in skipped)
        raise R.ReportError(f"no complete run found (a run directory holds {', '.join(RUN_FILES)}){detail}")
    report = runs_table(runs, metric, target, window)
    report.summary = summary_table(report.runs)
    report.paper = paper_table(report.summary)
    report.skipped = list(skipped)
    floors = {json_text(r.summary["floor"]) for r in runs if "floor" in r.summary}
    for floor in sorted(floors):
        report.notes.append(f"Flower's floor (fixed bytes of a minimal model-carrying message, measured): {floor}")
    return report


def json_text(value: Any) -> str:
    """A summary entry as one line: ``812 B`` for a number, ``key: value, ...`` for a dict."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v:,} B" if isinstance(v, int) else f"{k}: {v}" for k, v in value.items())
    return f"{value:,} B" if isinstance(value, int) else str(value)
