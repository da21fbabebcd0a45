"""fedcomp.plots: aggregation by hand, Pareto front, and every figure written for a small sweep."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fedcomp.analysis import figures as plots
from fedcomp import report as R
from fedcomp.report import write_synthetic_run as make_run

T975_1 = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1)
FIGURES = ("accuracy_vs_bytes", "pareto", "bytes_per_round", "formula_vs_measured")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two tasks; identity and two top-k densities; two seeds each (one failed uplink)."""
    root = tmp_path_factory.mktemp("sweep")
    for task in ("mnist", "digits"):
        for seed in (0, 1):
            make_run(root / task / f"compressor=none,seed={seed}", task=task, seed=seed,
                     metric_values=[0.1, 0.6, 0.85, 0.93 - 0.01 * seed])
            for density, up in ((0.1, 100), (0.01, 20)):
                make_run(root / task / f"compressor=topk,density={density},seed={seed}", task=task,
                         compressor="topk", seed=seed, up_payload=up + 5 * seed,
                         compressor_params={"density": density},
                         metric_values=[0.1, 0.5, 0.8, 0.92 - density - 0.02 * seed],
                         failed=[(2, 1)] if seed else [])
    return root


def test_aggregate_curves_on_the_round():
    curves = pd.DataFrame({
        "task": "t", "label": "x", "compressor": "x", "metric": "accuracy",
        "round": [1, 1], "run_id": ["a", "b"], "cum_payload_bytes": [100.0, 200.0], "value": [0.5, 0.7],
    })
    agg = plots.aggregate_curves(curves).iloc[0]
    assert agg["n"] == 2 and agg["bytes"] == 150.0 and agg["value"] == pytest.approx(0.6)
    # t(0.975, 1) x s / sqrt(2) with s = 0.1414 -> 12.706 x 0.1
    assert agg["value_ci95"] == pytest.approx(T975_1 * 0.1)
    assert agg["bytes_ci95"] == pytest.approx(T975_1 * 50.0)
    assert (agg["bytes_min"], agg["bytes_max"]) == (100.0, 200.0)


def test_pareto_front_by_hand():
    runs = pd.DataFrame({
        "task": "t", "metric": "accuracy",
        "label": ["none", "a", "b", "c", "c"],
        "compressor": ["none", "topk", "topk", "quant8", "quant8"],
        "saved_payload_up_pct": [0.0, 90.0, 95.0, 70.0, 80.0],
        "metric_delta": [0.0, -0.01, -0.05, -0.03, -0.01],
    })
    points = plots.pareto_points(runs).set_index("label")
    assert points.loc["c", "x"] == 75.0 and points.loc["c", "y"] == pytest.approx(-0.02)
    # c (75 %, -0.02) is dominated by a (90 %, -0.01); none, a, b are not dominated
    assert points["frontier"].to_dict() == {"a": True, "b": True, "c": False, "none": True}


def test_pareto_front_lower_is_better():
    runs = pd.DataFrame({
        "task": "lm", "metric": "perplexity", "label": ["none", "a", "b"],
        "compressor": ["none", "topk", "topk"],
        "saved_payload_up_pct": [0.0, 50.0, 40.0], "metric_delta": [0.0, 2.0, 3.0],
    })
    front = plots.pareto_points(runs).set_index("label")["frontier"].to_dict()
    assert front == {"none": True, "a": True, "b": False}  # b saves less AND is worse


def test_all_figures_written_for_a_sweep(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert R.main([str(sweep), "--out", str(out)]) == 0
    for name in FIGURES:
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    stdout = capsys.readouterr().out
    assert "2 tasks in one report" in stdout and "12 run(s), 6 configuration(s)" in stdout


def test_figure_functions_take_tidy_frames(sweep):
    rep = R.build_report(sweep)
    for fig in (
        plots.accuracy_vs_bytes(rep.curves, bytes_col="cum_wire_bytes"),
        plots.pareto(rep.runs),
        plots.bytes_per_round(rep.rounds, measure="wire_bytes"),
        plots.formula_vs_measured(rep.runs),
    ):
        assert len(fig.axes) >= 2  # one panel per task at least
        plots.plt.close(fig)
    long = plots.measures_long(rep.runs)
    ident = long[(long["label"] == "none") & (long["direction"] == "up") & (long["task"] == "mnist")]
    assert set(ident.groupby("measure")["bytes"].first()) == {6000.0, 6600.0}  # formula = dense = payload


def test_pareto_skipped_without_identity(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=10)
    written, notes = plots.make_all(R.build_report(tmp_path), tmp_path / "out")
    names = {p.stem for p in written}
    assert "pareto" not in names and {"accuracy_vs_bytes", "bytes_per_round", "formula_vs_measured"} <= names
    assert any(n.startswith("pareto:") for n in notes)
    assert not math.isnan(R.build_report(tmp_path).runs.iloc[0]["ratio_up"])
