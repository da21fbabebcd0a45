"""Figures for a paper from the report's tidy frames (see :mod:`fedcomp.analysis.tables`).

Each function takes a tidy frame (``curves``: run x round; ``rounds``: run x round x
direction; ``runs``: one row per run) and returns a matplotlib ``Figure``, so a figure can
be redrawn or restyled from the CSV files the report writes. Tasks are never mixed: one
panel each. Labels are the methods' own (``label``), one colour and marker per method
(:mod:`fedcomp.analysis.style`); accuracy-like metrics are drawn in percent.

Intervals are the tables' 95% Student-t intervals over seeds, clipped to the metric's
range, and drawn only where ``n >= 3``: with two seeds the t factor is 12.7 and a band
would cover the plot without saying anything (the tables mark those with ``†``).

accuracy_vs_bytes
    Central metric against cumulative bytes (down + up; wire by default, ``measure``
    picks another measure), log x. Seeds are aggregated on the round: the point of round
    ``r`` is the mean over seeds of the cumulative bytes and of the metric at ``r``.
    Round 0 (0 bytes) cannot sit on a log axis and is left out.
pareto
    Delta vs identity (headline metric) against the compression ratio on the wire
    (dense / wire; total by default, ``direction="up"`` for the uplink), log x; the dashed
    line joins the configurations no other beats on both.
bytes_per_round
    Bytes per round (mean over seeds), one panel per task and direction, log y.
bytes_breakdown
    Per method and direction: dense (what fp32 would cost), payload and wire over the
    run, log x; the gap between payload and wire is the framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import (
    EngFormatter,
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from fedcomp.analysis import style
from fedcomp.analysis.stats import MIN_INFORMATIVE_N, delta_bounds, lower_is_better, mean_ci, metric_bounds

#: Markers of the byte measures in :func:`bytes_breakdown`.
MEASURE_MARKERS = {"dense": "|", "payload": "o", "wire": "s", "link": "^"}
DIRECTION_TITLES = {"down": "downlink", "up": "uplink", "total": "down + up"}


def method_order(frame: pd.DataFrame) -> tuple[list[str], set[str]]:
    """Labels, identity runs first then alphabetical; and the identity labels."""
    pairs = frame[["label", "identity"]].drop_duplicates("label")
    ordered = sorted(zip(~pairs["identity"].astype(bool), pairs["label"].astype(str)))
    return [lab for _, lab in ordered], set(pairs.loc[pairs["identity"].astype(bool), "label"])


def styles_for(frame: pd.DataFrame) -> tuple[list[str], dict[str, style.Style]]:
    """The method order and one style per method, shared by every panel of a figure."""
    order, identity = method_order(frame)
    return order, style.method_styles(order, identity)


def scale_of(metric: str) -> tuple[float, str]:
    """Accuracy-like metrics are drawn in percent."""
    return (100.0, " (%)") if metric_bounds(metric) == (0.0, 1.0) else (1.0, "")


def aggregate_curves(curves: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per task, method and round: mean bytes, mean metric and its clipped 95% interval."""
    rows = []
    for (task, label, metric, rnd), part in curves.groupby(["task", "label", "metric", "round"], sort=True):
        value = mean_ci(part["value"], metric_bounds(str(metric)))
        rows.append({"task": task, "label": label, "metric": metric, "round": rnd,
                     "bytes": part[column].mean(), "value": value.mean, "low": value.low,
                     "high": value.high, "n": value.n})
    return pd.DataFrame(rows, columns=["task", "label", "metric", "round", "bytes", "value", "low", "high", "n"])


def log_axis(ax: Any, which: str, values: Any, unit: str = "B", zoom: bool = False, labels: int = 6) -> None:
    """A log axis labelled ``1 MB``/``10×`` at powers of ten.

    When the data span less than a decade, ``zoom`` labels round values inside the data
    (``1.2×, 1.4×, ...``, still log-spaced); otherwise the axis widens to whole decades so
    it keeps its labels and shows the values against the orders of magnitude around them.
    At most ``labels`` powers of ten are labelled (every other one on a narrow panel).
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    label = EngFormatter(unit="B", sep=" ") if unit == "B" else FuncFormatter(lambda v, _: f"{v:.3g}{unit}")
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    narrow = len(positive) and positive.max() / positive.min() < 10
    axis.set_minor_formatter(NullFormatter())
    if narrow and zoom:
        low, high = positive.min(), positive.max()
        if high / low > 3:  # 1-2-5 steps: evenly spread on a log axis
            steps = [m * 10.0 ** k for k in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
                     for m in (1, 2, 5)]
        else:
            steps = MaxNLocator(nbins=5).tick_values(low, high)
        ticks = [v for v in steps if low / 1.05 <= v <= high * 1.05]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())
    else:
        if narrow:
            low, high = 10 ** np.floor(np.log10(positive.min())), 10 ** np.ceil(np.log10(positive.max()))
            (ax.set_xlim if which == "x" else ax.set_ylim)(low / 1.2, high * 1.2)
        axis.set_major_locator(LogLocator(base=10, numticks=labels))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    axis.set_major_formatter(label)


def accuracy_vs_bytes(curves: pd.DataFrame, measure: str = "wire", width: str = "column") -> Figure:
    """Central metric against cumulative ``measure`` bytes (down + up), one line per method."""
    column = f"cum_{measure}"
    if column not in curves.columns:
        raise ValueError(f"bytes measure: {measure!r} is not in the runs' ledgers")
    style.theme()
    order, styles = styles_for(curves)
    agg = aggregate_curves(curves.dropna(subset=["value"]), column)
    agg = agg[agg["bytes"] > 0]
    tasks = sorted(curves["task"].astype(str).unique())
    fig, axes = style.figure(len(tasks), width)
    for ax, task in zip(axes, tasks):
        part = agg[agg["task"] == task]
        metric = str(part["metric"].iloc[0]) if len(part) else "metric"
        scale, unit = scale_of(metric)
        for label in [lab for lab in order if lab in set(part["label"])]:
            line, look = part[part["label"] == label].sort_values("round"), styles[label]
            ax.plot(line["bytes"], line["value"] * scale, **look.line(), markevery=max(1, len(line) // 8),
                    label=label)
            band = line[line["n"] >= MIN_INFORMATIVE_N]
            if len(band):
                ax.fill_between(band["bytes"], band["low"] * scale, band["high"] * scale,
                                color=look.color, alpha=0.15, lw=0)
        log_axis(ax, "x", part["bytes"], zoom=True)
        ax.set_xlabel(f"cumulative {measure} bytes, down + up")
        ax.set_ylabel(f"{metric}{unit}")
        if len(tasks) > 1:
            ax.set_title(task)
    style.legend_below(fig, axes, order)
    fig.tight_layout()
    return fig


def pareto_points(runs: pd.DataFrame, direction: str = "total") -> pd.DataFrame:
    """One point per configuration: mean ratio and delta with intervals, and its Pareto status."""
    x_col = f"ratio_wire_{direction}"
    rows = []
    for (task, label, metric), part in runs.groupby(["task", "label", "metric"], sort=True):
        x = mean_ci(part[x_col], (0.0, np.inf))
        y = mean_ci(part["delta"], delta_bounds(str(metric)))
        rows.append({"task": task, "label": label, "metric": metric, "identity": bool(part["identity"].iloc[0]),
                     "x": x.mean, "y": y.mean, "y_low": y.low, "y_high": y.high, "n": y.n})
    points = pd.DataFrame(rows, columns=["task", "label", "metric", "identity", "x", "y", "y_low", "y_high", "n"])
    points = points.dropna(subset=["x", "y"]).reset_index(drop=True)
    points["frontier"] = False
    for _, part in points.groupby(["task", "metric"]):
        good = -part["y"] if lower_is_better(str(part["metric"].iloc[0])) else part["y"]
        for i in part.index:
            better = (part["x"] >= part.at[i, "x"]) & (good >= good[i])
            strictly = (part["x"] > part.at[i, "x"]) | (good > good[i])
            points.at[i, "frontier"] = not (better & strictly).any()
    return points


def pareto(runs: pd.DataFrame, direction: str = "total", width: str = "column") -> Figure:
    """Delta vs identity against the compression ratio on the wire (log x), Pareto front dashed."""
    if direction not in ("up", "total"):
        raise ValueError(f"pareto direction: must be up or total, got {direction!r}")
    style.theme()
    order, styles = styles_for(runs)
    points = pareto_points(runs, direction)
    tasks = sorted(runs["task"].astype(str).unique())
    fig, axes = style.figure(len(tasks), width)
    for ax, task in zip(axes, tasks):
        part = points[points["task"] == task]
        metric = str(part["metric"].iloc[0]) if len(part) else "metric"
        scale, unit = scale_of(metric)
        ax.axhline(0, color="0.5", lw=0.6, ls=":")
        front = part[part["frontier"]].sort_values("x")
        ax.plot(front["x"], front["y"] * scale, color="0.35", lw=0.8, ls="--", zorder=1, label="Pareto front")
        rank = {label: i for i, label in enumerate(order)}
        for _, p in part.sort_values("label", key=lambda labels: labels.map(rank)).iterrows():
            look = styles[p["label"]]
            err = None
            if p["n"] >= MIN_INFORMATIVE_N:
                err = [[(p["y"] - p["y_low"]) * scale], [(p["y_high"] - p["y"]) * scale]]
            ax.errorbar(p["x"], p["y"] * scale, yerr=err, **look.line(), ls="none", ms=4.5,
                        capsize=1.5, elinewidth=0.7, label=p["label"], zorder=3)
        log_axis(ax, "x", part["x"], unit="×", zoom=True)
        ax.set_xlabel(f"compression ratio on the wire, {DIRECTION_TITLES[direction]} (dense / wire)")
        ax.set_ylabel(f"Δ {metric} vs identity{' (points)' if unit else ''}")
        if len(tasks) > 1:
            ax.set_title(task)
    style.legend_below(fig, axes, order)
    fig.tight_layout()
    return fig


def bytes_per_round(rounds: pd.DataFrame, measure: str = "wire", width: str = "column") -> Figure:
    """``measure`` bytes per round and direction (mean over seeds), one line per method, log y."""
    column = f"{measure}_bytes"
    if column not in rounds.columns:
        raise ValueError(f"bytes measure: {measure!r} is not in the runs' ledgers")
    style.theme()
    order, styles = styles_for(rounds)
    per_run = rounds.groupby(["run_id", "task", "label", "direction", "round"], as_index=False)[column].sum()
    mean = per_run.groupby(["task", "label", "direction", "round"], as_index=False)[column].mean()
    tasks = sorted(mean["task"].astype(str).unique())
    panels = [(t, d) for t in tasks for d in ("down", "up") if ((mean["task"] == t) & (mean["direction"] == d)).any()]
    fig, axes = style.figure(len(panels), width, panel_height=1.8)
    for ax, (task, direction) in zip(axes, panels):
        part = mean[(mean["task"] == task) & (mean["direction"] == direction)]
        for label in [lab for lab in order if lab in set(part["label"])]:
            line, look = part[part["label"] == label].sort_values("round"), styles[label]
            ax.plot(line["round"], line[column], **look.line(), markevery=max(1, len(line) // 8), label=label)
        log_axis(ax, "y", part[column])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.set_ylabel(f"{measure} bytes per round")
        ax.set_title(f"{task}: {DIRECTION_TITLES[direction]}" if len(tasks) > 1 else DIRECTION_TITLES[direction])
    style.legend_below(fig, axes, order)
    fig.tight_layout()
    return fig


def bytes_breakdown(runs: pd.DataFrame, width: str = "column") -> Figure:
    """Dense, payload and wire bytes over the run per method and direction (mean over seeds).

    One row of panels per task (downlink, uplink), sharing the byte axis within the row.
    """
    style.theme()
    order, styles = styles_for(runs)
    measures = [m for m in MEASURE_MARKERS if f"{m}_up" in runs.columns]
    tasks = sorted(runs["task"].astype(str).unique())
    rows = [[lab for lab in order if lab in set(runs.loc[runs["task"] == t, "label"])] for t in tasks]
    fig, grid = style.grid([0.7 + 0.14 * len(labels) for labels in rows], 2, width)
    for task, labels, axes in zip(tasks, rows, grid):
        columns = [f"{m}_{d}" for m in measures for d in ("down", "up")]
        part = runs[runs["task"] == task].groupby("label")[columns].mean()
        y = np.arange(len(labels))[::-1]
        for ax, direction in zip(axes, ("down", "up")):
            cols = [f"{m}_{direction}" for m in measures]
            for lab_y, label in zip(y, labels):
                ax.plot([part.loc[label, cols].min(), part.loc[label, cols].max()], [lab_y, lab_y],
                        color=styles[label].color, lw=1.0, zorder=1)
            for m in measures:
                look = {"facecolor": "none", "edgecolor": "0.15"} if m == "wire" else {"color": "0.15"}
                ax.scatter(part.loc[labels, f"{m}_{direction}"], y, marker=MEASURE_MARKERS[m],
                           s=30 if m == "dense" else 12, linewidths=0.8, zorder=2, label=m, **look)
            ax.set_yticks(y, labels)
            ax.set_ylim(-0.6, len(labels) - 0.4)
            log_axis(ax, "x", part.to_numpy().ravel(), labels=2 if width == "column" else 6)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel("bytes over the run" if task == tasks[-1] else "")
            ax.set_title(f"{task}: {DIRECTION_TITLES[direction]}" if len(tasks) > 1 else DIRECTION_TITLES[direction])
    style.legend_below(fig, [ax for axes in grid for ax in axes], order)
    fig.tight_layout()
    return fig


def make_all(report: Any, out: Path, width: str = "column", measure: str = "wire") -> tuple[list[Path], list[str]]:
    """Every figure of a :class:`fedcomp.analysis.tables.Report`; notes say what was not drawn."""
    written: list[Path] = []
    notes: list[str] = []
    if len(report.curves) and report.curves["value"].notna().any():
        written += style.save(accuracy_vs_bytes(report.curves, measure, width), out, "accuracy_vs_bytes")
    else:
        notes.append("accuracy_vs_bytes: no central metric in any run; figure not drawn.")
    if report.runs["delta"].notna().any():
        written += style.save(pareto(report.runs, "total", width), out, "pareto")
        written += style.save(pareto(report.runs, "up", width), out, "pareto_uplink")
    else:
        notes.append("pareto: no run has a matching identity run (no delta); figure not drawn.")
    if len(report.rounds):
        written += style.save(bytes_per_round(report.rounds, measure, width), out, "bytes_per_round")
    written += style.save(bytes_breakdown(report.runs, width), out, "bytes_breakdown")
    if (report.summary["n"] < MIN_INFORMATIVE_N).any():
        notes.append(f"figures draw 95% intervals only where n >= {MIN_INFORMATIVE_N} seeds.")
    return written, notes
