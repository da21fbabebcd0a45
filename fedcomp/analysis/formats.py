"""Human views of the report's tables and the files they are written to.

Files (in the report's output directory, each written by the one atomic writer)
------------------------------------------------------------------------------
``runs.csv`` / ``summary.csv`` / ``paper.csv``
    Every column in plain units (bytes, fractions): the data behind everything else.
``runs.md`` / ``.tex``, ``summary.md`` / ``.tex``
    The columns a reader needs, bytes in MB (10^6 B), accuracy-like metrics in percent.
``paper.tex`` / ``paper.md``
    The compact table for a paper (booktabs): method, bits per uplink entry, uplink and
    total compression ratio on the wire, headline metric ± 95% CI, delta vs identity, n.
``rounds.csv``, ``curves.csv``
    The tidy per-round frames the figures are drawn from.
``skipped.csv``
    Every candidate run directory left out, with the reason.

Intervals read ``mean ± half`` when the 95% interval fits the figure's range and
``mean [low, high]`` when the range cut it; ``†`` marks ``n < 3`` (uninformative).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedcomp.analysis.stats import MIN_INFORMATIVE_N, lower_is_better, metric_bounds
from fedcomp.analysis.tables import Report
from fedcomp.core.files import write_text
from fedcomp.core.units import MB

DAGGER = "†"
MEASURE_PREFIXES = ("model_bytes", "baseline_", "formula_", "dense_", "payload_", "wire_", "link_",
                    "request_", "framing_")
RUNS_VIEW = ["label", "seed", "bits_per_entry_up", "payload_up", "wire_up", "framing_up", "wire_down",
             "framing_down", "link_total", "ratio_wire_up", "ratio_wire_total", "headline", "last_round", "delta",
             "rounds_to_target", "wire_to_target", "num_failures"]
SUMMARY_VIEW = ["label", "n", "bits_per_entry_up", "payload_up", "wire_up", "framing_up", "wire_down",
                "framing_down", "link_total", "ratio_payload_up", "ratio_wire_up", "ratio_wire_total", "headline",
                "delta", "rounds_to_target", "wire_to_target"]
PAPER_VIEW = ["label", "bits_per_entry_up", "ratio_wire_up", "ratio_wire_total", "headline", "delta", "n"]
#: Columns kept in a view even when empty (a missing identity run must show).
ALWAYS = ("label", "seed", "n", "headline", "delta")
#: Columns shown with their 95% interval in the pooled views.
CI_COLUMNS = ("headline", "last_round", "delta")


def is_fraction(metric: Any) -> bool:
    """Accuracy-like metrics (range [0, 1]) are shown in percent."""
    return metric_bounds(str(metric)) == (0.0, 1.0)


def fmt(col: str, value: Any, metric: Any = None) -> str:
    """One cell: MB for bytes, ``12.3x`` for ratios, percent for accuracy-like metrics."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    value = float(value)
    if col.startswith("framing_per_msg"):
        return f"{value:,.0f}"
    if col.startswith(MEASURE_PREFIXES) or col.endswith("_to_target") and col != "rounds_to_target":
        return f"{value / MB:.4g}"
    if col.startswith("ratio_"):
        return f"{value:.1f}×" if value < 100 else f"{value:,.0f}×"
    if col.startswith("bits_per_entry"):
        return f"{value:.2f}"
    if col in ("headline", "last_round", "delta"):
        scaled = value * 100 if is_fraction(metric) else value
        digits = 1 if is_fraction(metric) else 4
        return f"{scaled:+.{digits}f}" if col == "delta" else f"{scaled:.{digits}f}"
    if col in ("rounds_to_target", "num_failures", "n", "seed"):
        return f"{value:.3g}"
    return f"{value:.4g}"


def fmt_interval(col: str, row: pd.Series, metric: Any = None) -> str:
    """``mean ± half`` (or ``mean [low, high]`` when clipped), ``†`` for ``1 < n < 3``, and
    ``(n=k)`` when the figure has fewer values than the configuration has runs."""
    mean = row.get(col)
    text = fmt(col, mean, metric)
    half, low, high = row.get(f"{col}_ci95"), row.get(f"{col}_low"), row.get(f"{col}_high")
    n = row.get(f"n_{col}", row.get("n", 0))
    fewer = f" (n={int(n)})" if text and f"n_{col}" in row and n != row.get("n") else ""  # e.g. no identity run
    if not text or half is None or pd.isna(half):
        return text + fewer
    mark = (DAGGER if 1 < n < MIN_INFORMATIVE_N else "") + fewer
    if low > mean - half or high < mean + half:
        return f"{text} [{fmt(col, low, metric)}, {fmt(col, high, metric)}]{mark}"
    return f"{text} ± {fmt(col, half, metric).lstrip('+')}{mark}"


def rounds_text(windows: list[int]) -> str:
    """``last 5 rounds`` (``last 1 round``; ``last final_window rounds`` when runs differ)."""
    if len(windows) != 1:
        return "last final_window rounds"
    return f"last {windows[0]} round{'' if windows[0] == 1 else 's'}"


def shown_metric(report: Report, frame: pd.DataFrame) -> str:
    """The metric a table shows: the requested one, else the first one its runs have."""
    metrics = [m for m in dict.fromkeys(frame["metric"]) if isinstance(m, str)] if "metric" in frame else []
    return report.metric if report.metric in metrics or not metrics else metrics[0]


def paper_titles(metric: str) -> dict[str, str]:
    """Short column titles for the paper table (the caption explains them)."""
    unit = " (%)" if is_fraction(metric) else ""
    return {"label": "Method", "bits_per_entry_up": "Bits/entry", "ratio_wire_up": "Uplink ratio",
            "ratio_wire_total": "Total ratio", "headline": f"{metric.capitalize()}{unit}",
            "delta": f"Δ{' (pts)' if unit else ''}", "n": "n"}


def headers(report: Report, frame: pd.DataFrame) -> dict[str, str]:
    """Column titles that state units, the averaging window and the target where used."""
    metric = shown_metric(report, frame)
    unit = " (%)" if is_fraction(metric) else ""
    windows = sorted({int(w) for w in frame.get("final_window", []) if pd.notna(w)})
    window = rounds_text(windows)
    sign = "<=" if lower_is_better(report.metric) else ">="
    target = f"{report.metric} {sign} {report.target:g}" if report.target is not None else ""
    return {
        "label": "method", "seed": "seed", "n": "n",
        "bits_per_entry_up": "bits/entry up",
        "payload_up": "payload up (MB)", "wire_up": "wire up (MB)", "framing_up": "framing up (MB)",
        "wire_down": "wire down (MB)", "framing_down": "framing down (MB)",
        "link_total": "link total (MB)",
        "ratio_payload_up": "up ratio (payload)", "ratio_wire_up": "up ratio (wire)",
        "ratio_wire_total": "total ratio (wire)",
        "headline": f"{metric}{unit}, mean of {window}", "last_round": f"{metric}{unit}, last round",
        "delta": f"Δ vs identity{' (points)' if unit else ''}",
        "rounds_to_target": f"rounds to {target}", "wire_to_target": f"wire to {target} (MB)",
        "num_failures": "failures",
    }


def view(report: Report, table: pd.DataFrame, columns: Sequence[str], with_ci: bool,
         titles: dict[str, str] | None = None) -> pd.DataFrame:
    """A human table: the selected columns as strings, titled by ``titles`` or :func:`headers`."""
    cols = (["task"] if table["task"].nunique() > 1 else []) + [
        c for c in columns if c in table.columns and (c in ALWAYS or table[c].notna().any())]
    if report.target is None:
        cols = [c for c in cols if not c.endswith("_to_target")]
    if "link_total" in cols and table["link_total"].equals(table.get("wire_total")):
        cols.remove("link_total")  # a SuperLink would save nothing: the same as the wire
    titles = {**headers(report, table), **(titles or {})}
    out = {}
    for col in cols:
        if with_ci and col in CI_COLUMNS:
            cells = [fmt_interval(col, row, row.get("metric")) for _, row in table.iterrows()]
        else:
            cells = [fmt(col, v, m) for v, m in zip(table[col], table.get("metric", [None] * len(table)))]
        out[titles.get(col, col)] = cells
    return pd.DataFrame(out)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub pipe table."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(frame.columns))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


#: Characters LaTeX text mode reserves, and what prints them.
LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
#: Symbols the views use, as LaTeX (applied after escaping).
LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", DAGGER: r"$^\dagger$", "×": r"$\times$", "≥": r"$\geq$",
                 ">=": r"$\geq$", "<=": r"$\leq$", "<": r"$<$", ">": r"$>$", "|": r"\textbar{}",
                 "→": r"$\rightarrow$"}


def latex_text(text: str) -> str:
    """``text`` escaped for LaTeX text mode, the views' symbols as math."""
    out = "".join(LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    for symbol, latex in LATEX_SYMBOLS.items():
        out = out.replace(symbol, latex)
    return re.sub(r"(?<![\w.])-(?=\d)", "$-$", out)  # a minus sign, not a hyphen


def to_latex(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table (pandas Styler): every cell, title and the caption escaped."""
    escaped = frame.map(latex_text).rename(columns=latex_text)
    styler = escaped.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="l" + "r" * (len(frame.columns) - 1),
                           caption=latex_text(caption), label=label, position_float="centering")


def paper_caption(report: Report) -> str:
    """What every column of the paper table means, with n and the interval's range."""
    metric = shown_metric(report, report.paper)
    window = rounds_text(sorted({int(w) for w in report.paper.get("final_window", []) if pd.notna(w)}))
    low, high = metric_bounds(metric)
    scale = 100 if is_fraction(metric) else 1
    rng = f" clipped to [{low * scale:g}, {high * scale:g}]" if math.isfinite(high) else ""
    return (f"Bits/entry: 8 × uplink payload / values sent up. Ratios: dense fp32 bytes / wire bytes, "
            f"uplink and total (down + up). {metric.capitalize()}{' (%)' if scale == 100 else ''}: mean of the "
            f"{window}, mean ± 95% Student-t interval over n seeds{rng}; Δ: difference to the "
            f"identity run of the same seed{' in points' if scale == 100 else ''}. {DAGGER} n < 3: interval "
            f"uninformative.")


def write_tables(report: Report, out: Path) -> list[Path]:
    """Write every table of ``report`` into ``out``; return the paths."""
    target = f"; target {report.metric} {report.target:g}" if report.target is not None else ""
    files: dict[str, str] = {
        "runs.csv": report.runs.to_csv(index=False),
        "summary.csv": report.summary.to_csv(index=False),
        "paper.csv": report.paper.to_csv(index=False),
        "rounds.csv": report.rounds.to_csv(index=False),
        "curves.csv": report.curves.to_csv(index=False),
        "skipped.csv": pd.DataFrame([(str(s.path), s.reason) for s in report.skipped],
                                    columns=["path", "reason"]).to_csv(index=False),
    }
    for name, table, columns, with_ci, caption in (
        ("runs", report.runs, RUNS_VIEW, False, f"fedcomp runs (bytes in MB{target})"),
        ("summary", report.summary, SUMMARY_VIEW, True,
         f"fedcomp: mean ± 95% CI over seeds, {DAGGER} n < 3 (bytes in MB{target})"),
        ("paper", report.summary, PAPER_VIEW, True, paper_caption(report)),
    ):
        titles = paper_titles(shown_metric(report, table)) if name == "paper" else None
        shown = view(report, table, columns, with_ci, titles)
        files[f"{name}.md"] = to_markdown(shown)
        files[f"{name}.tex"] = to_latex(shown, caption=caption, label=f"tab:fedcomp-{name}")
    return [write_text(out / name, text) for name, text in files.items()]
