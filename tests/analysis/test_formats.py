"""fedcomp.analysis.formats: cells, intervals, Markdown, and LaTeX that a parser (or pdflatex) accepts."""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest

from fedcomp.analysis import formats as F
from fedcomp.analysis import runs as R
from fedcomp.analysis import tables as T
from tests.helpers import write_synthetic_run as make_run

SPECIALS = "&%$#_{}~^"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Identity and top-k over 3 seeds, 8-bit over 2 seeds (uninformative), target 0.8; the
    headline is the last round (``report.final_window: 1`` in each run's config)."""
    root = tmp_path_factory.mktemp("sweep")
    for seed in range(3):
        make_run(root / f"n{seed}", compressor="none", seed=seed, metric_values=[0.1, 0.7, 0.97 + 0.01 * seed],
                 final_window=1)
        make_run(root / f"t{seed}", compressor="topk", seed=seed, up_payload=100,
                 metric_values=[0.1, 0.6, 0.90 + 0.01 * seed], final_window=1)
        if seed < 2:
            make_run(root / f"q{seed}", compressor="quant8", seed=seed, up_payload=250,
                     metric_values=[0.1, 0.6, 0.92 + 0.03 * seed], final_window=1)
    runs, skipped = R.load_runs(root)
    return T.build(runs, skipped, "accuracy", 0.8, None)


def test_cells_state_units():
    assert F.fmt("payload_up", 1_234_567) == "1.235"  # MB
    assert F.fmt("ratio_wire_up", 25.54) == "25.5×" and F.fmt("ratio_wire_up", 428.2) == "428×"
    assert F.fmt("headline", 0.91234, "accuracy") == "91.2" and F.fmt("headline", 21.5, "perplexity") == "21.5000"
    assert F.fmt("delta", -0.0123, "accuracy") == "-1.2" and F.fmt("delta", 0.004, "accuracy") == "+0.4"
    assert F.fmt("bits_per_entry_up", 3.2) == "3.20" and F.fmt("label", "top-k") == "top-k"
    assert F.fmt("headline", float("nan")) == ""


def test_intervals_say_when_clipped_and_when_uninformative():
    row = pd.Series({"n": 3, "headline": 0.99, "headline_ci95": 0.0248, "headline_low": 0.9652, "headline_high": 1.0})
    assert F.fmt_interval("headline", row, "accuracy") == "99.0 [96.5, 100.0]"
    row = pd.Series({"n": 3, "headline": 0.9, "headline_ci95": 0.012, "headline_low": 0.888, "headline_high": 0.912})
    assert F.fmt_interval("headline", row, "accuracy") == "90.0 ± 1.2"
    row = pd.Series({"n": 2, "headline": 0.5, "headline_ci95": 0.3, "headline_low": 0.2, "headline_high": 0.8})
    assert F.fmt_interval("headline", row, "accuracy") == "50.0 ± 30.0†"
    row = pd.Series({"n": 3, "n_delta": 1, "delta": -0.02, "delta_ci95": float("nan"),
                     "delta_low": -0.02, "delta_high": -0.02})
    assert F.fmt_interval("delta", row, "accuracy") == "-2.0 (n=1)"


def test_latex_text_escapes_and_typesets_symbols():
    assert F.latex_text("top-k 1% +EF") == r"top-k 1\% +EF"
    assert F.latex_text("|x|>=0.001 +EF") == r"\textbar{}x\textbar{}$\geq$0.001 +EF"
    assert F.latex_text("-2.0 ± 1.0† [-3.1, -0.9]") == r"$-$2.0 $\pm$ 1.0$^\dagger$ [$-$3.1, $-$0.9]"
    assert F.latex_text("a_b & c#") == r"a\_b \& c\#"


def test_markdown_table_shape(report):
    md = F.to_markdown(F.view(report, report.summary, F.SUMMARY_VIEW, with_ci=True))
    lines = md.splitlines()
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
    assert lines[0].startswith("| method | n |") and "accuracy (%), mean of last 1 round |" in lines[0]
    assert "rounds to accuracy >= 0.8" in lines[0]  # the target is printed where it is used
    assert "nan" not in md.lower()


def test_link_bytes_are_shown_where_a_superlink_would_save_something(report, tmp_path):
    for view in (F.RUNS_VIEW, F.SUMMARY_VIEW):  # the report's runs: link = wire
        table = report.runs if view is F.RUNS_VIEW else report.summary
        assert "link total (MB)" not in F.view(report, table, view, with_ci=False).columns
    # a run whose messages cost 50 B each through a SuperLink (wire: 1,100 B)
    make_run(tmp_path / "echo", compressor="none", extra_measures={"link_bytes": 50})
    runs, skipped = R.load_runs(tmp_path)
    echo = T.build(runs, skipped, "accuracy", None, None)
    shown = F.view(echo, echo.runs, F.RUNS_VIEW, with_ci=False)
    # 3 rounds x 2 clients x 2 directions x 50 B
    assert shown["link total (MB)"].tolist() == [F.fmt("link_total", 600)]
    assert F.view(echo, echo.summary, F.SUMMARY_VIEW, with_ci=True)["link total (MB)"].tolist() == shown[
        "link total (MB)"
    ].tolist()


def parse_tabular(tex: str) -> tuple[str, list[list[str]], str]:
    """Column spec, rows of cells and caption of a booktabs table; assert it is well formed."""
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")
    caption = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    body = tex[tex.index(r"\begin{tabular}"):tex.index(r"\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1)
    lines = [line.strip() for line in body.splitlines()[1:] if line.strip()]
    assert [line for line in lines if not line.endswith("\\\\")] == [r"\toprule", r"\midrule", r"\bottomrule"]
    assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"
    rows = [re.split(r"(?<!\\)&", line[:-2]) for line in lines if line.endswith("\\\\")]
    for cell in [caption] + [c for r in rows for c in r]:
        unescaped = re.sub(r"\\.", "", cell)  # drop escaped characters and commands' first letters
        assert unescaped.count("$") % 2 == 0 and not set(cell) & set("±Δ†×≥"), cell
        text_mode = re.sub(r"\$[^$]*\$", "", unescaped)  # math ($^\dagger$) may use ^
        assert not set(text_mode) & set("&%#_~^<>|"), cell
    return spec, [[c.strip() for c in r] for r in rows], caption


def test_paper_table_is_booktabs_latex_with_the_columns_a_paper_needs(report, tmp_path):
    F.write_tables(report, tmp_path)
    spec, rows, caption = parse_tabular((tmp_path / "paper.tex").read_text())
    assert spec == "lrrrrrr" and all(len(r) == len(spec) for r in rows)
    assert rows[0] == ["Method", "Bits/entry", "Uplink ratio", "Total ratio", r"Accuracy (\%)",
                       r"$\Delta$ (pts)", "n"]
    cells = {r[0]: r for r in rows[1:]}
    assert list(cells) == ["none", "8-bit", r"top-k 1\% +EF"]
    # top-k: each update carries 100 B for 250 values (8 x 100 / 250 = 3.2 bits) in 200 B on
    # the wire, for 1,000 dense bytes (5x)
    assert cells[r"top-k 1\% +EF"][1] == "3.20"
    assert cells[r"top-k 1\% +EF"][2] == r"5.0$\times$"
    assert cells[r"top-k 1\% +EF"][4] == r"91.0 $\pm$ 2.5"  # 0.90, 0.91, 0.92: t(2) 0.01 / sqrt 3
    assert cells[r"top-k 1\% +EF"][5] == r"$-$7.0 $\pm$ 0.0" and cells[r"top-k 1\% +EF"][6] == "3"
    assert cells["none"][4] == r"98.0 [95.5, 100.0]"  # clipped to the range of accuracy
    assert cells["8-bit"][4].endswith(r"$^\dagger$") and cells["8-bit"][6] == "2"
    assert "over n seeds clipped to [0, 100]" in caption and r"95\% Student-t" in caption
    assert r"$^\dagger$ n $<$ 3: interval uninformative" in caption


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_paper_table_compiles(report, tmp_path):
    F.write_tables(report, tmp_path)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[utf8]{inputenc}\n"
                   "\\begin{document}\n\\input{paper.tex}\n\\input{summary.tex}\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:]


def test_every_file_is_written_and_skipped_runs_are_listed(report, tmp_path):
    report.skipped = [R.Skipped(tmp_path / "half", "incomplete run (missing summary.json)")]
    names = sorted(p.name for p in F.write_tables(report, tmp_path))
    assert set(names) == {f"{t}.{e}" for t in ("runs", "summary", "paper") for e in ("csv", "md", "tex")} | {
        "curves.csv", "rounds.csv", "skipped.csv"}
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert skipped.to_dict("records") == [
        {"path": str(tmp_path / "half"), "reason": "incomplete run (missing summary.json)"}]
    for name in ("runs", "summary"):
        spec, rows, _ = parse_tabular((tmp_path / f"{name}.tex").read_text())
        assert all(len(r) == len(spec) for r in rows)
    assert (tmp_path / "summary.csv").stat().st_mode & 0o777 == 0o644
