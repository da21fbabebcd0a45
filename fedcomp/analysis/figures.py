"""Publication figures from the report's tidy frames (seaborn, colour-blind-safe palette).

Every function takes a tidy DataFrame (see :mod:`fedcomp.report`: ``runs`` one row per
run, ``curves`` one row per run x round with the central metric and cumulative bytes,
``rounds`` one row per run x round x direction) and returns a matplotlib ``Figure``,
so a user can restyle or redraw from the same frames. :func:`save` writes PNG (200
dpi) and PDF. Runs of different tasks are drawn in separate panels, never mixed.

Confidence intervals are 95% Student-t intervals across seeds
(:func:`fedcomp.report.mean_ci95`), the same as in the tables, in every figure.

accuracy_vs_bytes
    Seeds of one configuration share the round grid but not always the bytes (sampled
    top-k cuts and failed clients change what a seed moves), so the curve is
    aggregated *on the round*: for each configuration and round ``r`` the point is
    ``(mean over seeds of cumulative bytes at the end of r, mean metric at r)``; the
    band is the metric's 95% t-interval across seeds at that round, and a horizontal
    bar shows the bytes' 95% t-interval where seeds differ. The band is clipped to the
    values the metric can take ([0, 1] for accuracy, >= 0 for loss and perplexity). Round 0 (the initial model,
    0 bytes) cannot sit on a log axis and is left out of the line.
pareto
    One point per configuration: mean uplink payload saved (% of the formula baseline)
    against mean metric delta vs the matching identity run, with 95% t-interval error
    bars on both; the line joins the non-dominated configurations (no other saves at
    least as much with at least as good a delta, better in one).
bytes_per_round
    Bytes per round per direction (panels), one line per configuration, t-interval band
    across seeds.
formula_vs_measured
    Bars per configuration, one panel per direction (down, up, total): continuous
    formula, integer-cohort formula (the baseline), measured dense, payload and wire,
    in MB on a linear axis (bar lengths compare), mean over seeds with t-interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedcomp.report import lower_is_better, mean_ci95  # noqa: E402

DPI = 200
FORMATS = ("png", "pdf")


def set_style() -> None:
    """The publication style: seaborn paper context, white grid."""
    sns.set_theme(context="paper", style="whitegrid")


def label_order(frame: pd.DataFrame) -> list[str]:
    """Labels, the uncompressed baseline (compressor ``none``) first, then alphabetical."""
    pairs = frame[["compressor", "label"]].drop_duplicates()
    key = [(0 if c == "none" else 1, str(lab)) for c, lab in zip(pairs["compressor"], pairs["label"])]
    return [lab for _, lab in sorted(key)]


def palette(labels: Sequence[str]) -> dict[str, Any]:
    """One colour-blind-safe colour per label (the palette repeats past 10 labels)."""
    colors = sns.color_palette("colorblind", max(len(labels), 1))
    return {lab: colors[i % len(colors)] for i, lab in enumerate(labels)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def marker_map(labels: Sequence[str]) -> dict[str, str]:
    """One marker per label, so lines stay apart in greyscale and where they overlap."""
    return {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(labels)}


def t_interval(values: Iterable[float]) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: the 95% Student-t interval (a point for n < 2)."""
    mean, half, _ = mean_ci95(values)
    half = 0.0 if np.isnan(half) else half
    return mean - half, mean + half


def _tasks(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["task"].astype(str).unique())


def _panels(n: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n + 1.8, height), squeeze=False)
    return fig, list(axes[0])


def _legend(fig: Figure, axes: Sequence[plt.Axes]) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


# --------------------------------------------------------------------------- accuracy vs bytes


def clip_to_range(metric: str, low: pd.Series, high: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Clip an interval to the metric's possible values: [0, 1] for accuracy, >= 0 otherwise.

    With few seeds the t-interval is wide (t(0.975, 1) = 12.7) and can leave the range a
    metric can take; the band is drawn clipped, the tables keep the unclipped half-width.
    """
    upper = 1.0 if "accuracy" in metric else None
    return low.clip(lower=0.0), high.clip(lower=0.0, upper=upper)


def aggregate_curves(curves: pd.DataFrame, bytes_col: str = "cum_payload_bytes") -> pd.DataFrame:
    """Per task, configuration and round: mean and 95% t-interval of bytes and metric over seeds."""
    rows = []
    keys = ["task", "label", "compressor", "metric", "round"]
    for key, part in curves.groupby(keys, dropna=False, sort=True):
        b_mean, b_half, n = mean_ci95(part[bytes_col])
        v_mean, v_half, _ = mean_ci95(part["value"])
        rows.append({
            **dict(zip(keys, key)), "n": n, "bytes": b_mean, "bytes_ci95": b_half,
            "bytes_min": part[bytes_col].min(), "bytes_max": part[bytes_col].max(),
            "value": v_mean, "value_ci95": v_half,
        })
    return pd.DataFrame(rows)


def accuracy_vs_bytes(curves: pd.DataFrame, bytes_col: str = "cum_payload_bytes") -> Figure:
    """Central metric vs cumulative bytes (down + up), log x, one line per configuration."""
    set_style()
    agg = aggregate_curves(curves, bytes_col)
    agg = agg[agg["bytes"] > 0]  # round 0 = 0 bytes: not on a log axis
    colors = palette(label_order(curves))
    markers = marker_map(label_order(curves))
    tasks = _tasks(curves)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        part = agg[agg["task"] == task]
        for label in label_order(curves[curves["task"] == task]):
            line = part[part["label"] == label].sort_values("round")
            if line.empty:
                continue
            color = colors[label]
            ax.plot(line["bytes"], line["value"], marker=markers[label], markersize=3.5, color=color, label=label)
            half = line["value_ci95"].fillna(0)
            low, high = clip_to_range(str(line["metric"].iloc[0]), line["value"] - half, line["value"] + half)
            ax.fill_between(line["bytes"], low, high, color=color, alpha=0.2, lw=0)
            xerr = line["bytes_ci95"].fillna(0)
            if (xerr > 0).any():
                ax.errorbar(line["bytes"], line["value"], xerr=xerr, fmt="none", ecolor=color, alpha=0.5, lw=0.8)
        metric = str(part["metric"].iloc[0]) if len(part) else "metric"
        ax.set_xscale("log")
        ax.set_xlabel(f"cumulative {bytes_col.removeprefix('cum_').replace('_', ' ')}, down + up (B)")
        ax.set_ylabel(f"central {metric}")
        ax.set_title(task)
    _legend(fig, axes)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- pareto


def pareto_points(
    runs: pd.DataFrame, x: str = "saved_payload_up_pct", y: str = "metric_delta"
) -> pd.DataFrame:
    """One point per configuration (mean and t-interval over seeds) and its Pareto status."""
    rows = []
    for (task, label, compressor, metric), part in runs.groupby(
        ["task", "label", "compressor", "metric"], dropna=False, sort=True
    ):
        x_mean, x_half, _ = mean_ci95(part[x])
        y_mean, y_half, n = mean_ci95(part[y])
        rows.append({"task": task, "label": label, "compressor": compressor, "metric": metric, "n": n,
                     "x": x_mean, "x_ci95": x_half, "y": y_mean, "y_ci95": y_half})
    points = pd.DataFrame(rows, columns=["task", "label", "compressor", "metric", "n", "x", "x_ci95", "y", "y_ci95"])
    points = points.dropna(subset=["x", "y"]).reset_index(drop=True)
    points["frontier"] = False
    for _, part in points.groupby(["task", "metric"]):
        sign = -1.0 if lower_is_better(str(part["metric"].iloc[0])) else 1.0
        good = sign * part["y"]
        for i in part.index:
            dominated = ((part["x"] >= part.at[i, "x"]) & (good >= good[i])
                         & ((part["x"] > part.at[i, "x"]) | (good > good[i]))).any()
            points.at[i, "frontier"] = not dominated
    return points


def pareto(runs: pd.DataFrame, x: str = "saved_payload_up_pct", y: str = "metric_delta") -> Figure:
    """Metric delta vs uplink bytes saved (%), one point per configuration, Pareto front marked."""
    set_style()
    points = pareto_points(runs, x, y)
    colors = palette(label_order(runs))
    markers = marker_map(label_order(runs))
    tasks = _tasks(points) if len(points) else _tasks(runs)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        part = points[points["task"] == task]
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        for _, p in part.iterrows():
            ax.errorbar(p["x"], p["y"], xerr=np.nan_to_num(p["x_ci95"]), yerr=np.nan_to_num(p["y_ci95"]),
                        fmt=markers[p["label"]], color=colors[p["label"]], label=p["label"], capsize=2, ms=5)
        front = part[part["frontier"]].sort_values("x")
        if len(front):
            ax.plot(front["x"], front["y"], color="0.2", lw=1.0, ls="--", label="Pareto front", zorder=0)
        metric = str(part["metric"].iloc[0]) if len(part) else "metric"
        ax.set_xlabel(f"uplink bytes saved vs formula (%, {x.split('_')[1]})")
        ax.set_ylabel(f"{metric} delta vs identity")
        ax.set_title(task)
    _legend(fig, axes)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- bytes per round


def bytes_per_round(rounds: pd.DataFrame, measure: str = "payload_bytes") -> Figure:
    """Bytes per round, one panel per task x direction, one line per configuration."""
    set_style()
    per = rounds.groupby(["run_id", "task", "label", "compressor", "direction", "round"], as_index=False)[measure].sum()
    colors = palette(label_order(rounds))
    tasks = _tasks(per)
    directions = [d for d in ("down", "up") if d in set(per["direction"])]
    fig, axes = plt.subplots(len(tasks), len(directions), figsize=(4.0 * len(directions) + 1.8, 3.0 * len(tasks)),
                             squeeze=False)
    flat = []
    for r, task in enumerate(tasks):
        for c, direction in enumerate(directions):
            ax = axes[r][c]
            part = per[(per["task"] == task) & (per["direction"] == direction)]
            order = [lab for lab in label_order(rounds) if lab in set(part["label"])]
            sns.lineplot(data=part, x="round", y=measure, hue="label", hue_order=order, palette=colors,
                         style="label", style_order=order, markers=marker_map(order), dashes=False,
                         errorbar=t_interval, markersize=4, ax=ax)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{task}: {'downlink' if direction == 'down' else 'uplink'}")
            ax.set_ylabel(f"{measure.replace('_', ' ')} per round (B)")
            flat.append(ax)
    _legend(fig, flat)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- formula vs measured

MEASURE_BARS = {
    "formula_continuous": "formula (continuous)",
    "baseline": "formula (integer cohort)",
    "dense": "measured dense",
    "payload": "payload",
    "wire": "wire",
}
DIRECTION_TITLES = {"down": "downlink", "up": "uplink", "total": "total (down + up)"}


def measures_long(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs table as tidy rows: task, label, seed, direction, measure, bytes."""
    rows = []
    for direction in DIRECTION_TITLES:
        for key, name in MEASURE_BARS.items():
            col = f"{key}_{direction}"
            if col not in runs.columns:
                continue
            part = runs[["task", "label", "compressor", "seed", col]].rename(columns={col: "bytes"})
            rows.append(part.assign(direction=direction, measure=name))
    return pd.concat(rows, ignore_index=True)


def formula_vs_measured(runs: pd.DataFrame) -> Figure:
    """Bytes over the run per configuration and direction: formula vs measured dense, payload, wire.

    Linear axis in MB (10^6 B) so bar lengths compare; bars are means over seeds with
    95% t-intervals.
    """
    set_style()
    long = measures_long(runs)
    long["MB"] = long["bytes"] / 1e6
    colors = dict(zip(MEASURE_BARS.values(), sns.color_palette("colorblind", len(MEASURE_BARS))))
    tasks = _tasks(runs)
    directions = list(DIRECTION_TITLES)
    n_labels = max(int(runs.groupby("task")["label"].nunique().max()), 1)
    width = max(3.2, 0.9 * n_labels + 1.2)
    fig, axes = plt.subplots(len(tasks), len(directions), figsize=(width * len(directions) + 1.8, 3.4 * len(tasks)),
                             squeeze=False)
    flat = []
    for r, task in enumerate(tasks):
        order = label_order(runs[runs["task"] == task])
        for c, direction in enumerate(directions):
            ax = axes[r][c]
            part = long[(long["task"] == task) & (long["direction"] == direction)]
            sns.barplot(data=part, x="label", y="MB", hue="measure", order=order,
                        hue_order=list(MEASURE_BARS.values()), palette=colors, errorbar=t_interval,
                        capsize=0.1, err_kws={"linewidth": 0.8}, ax=ax)
            ax.set_xlabel("")
            ax.set_ylabel("MB over the run" if c == 0 else "")
            ax.set_title(f"{task}: {DIRECTION_TITLES[direction]}")
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
            flat.append(ax)
    _legend(fig, flat)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- files


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write ``name.png`` (200 dpi) and ``name.pdf`` into ``out``; close the figure."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def make_all(report: Any, out: Path) -> tuple[list[Path], list[str]]:
    """All four figures of a :class:`fedcomp.report.Report`; notes say what was left out."""
    written: list[Path] = []
    notes: list[str] = []
    curves = report.curves
    if len(curves) and "value" in curves and curves["value"].notna().any():
        written += save(accuracy_vs_bytes(curves), out, "accuracy_vs_bytes")
    else:
        notes.append("accuracy_vs_bytes: no central metric in any run; figure not drawn.")
    if report.runs["metric_delta"].notna().any():
        written += save(pareto(report.runs), out, "pareto")
    else:
        notes.append("pareto: no run has a matching identity run (no metric delta); figure not drawn.")
    if len(report.rounds):
        written += save(bytes_per_round(report.rounds), out, "bytes_per_round")
    else:
        notes.append("bytes_per_round: the ledgers are empty; figure not drawn.")
    written += save(formula_vs_measured(report.runs), out, "formula_vs_measured")
    return written, notes
