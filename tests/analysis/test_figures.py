"""fedcomp.analysis.figures: aggregation and Pareto front by hand, bands only where n >= 3,
labels from the compressors, and every figure written for a small sweep."""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from fedcomp.analysis import figures, style
from fedcomp.analysis import runs as R
from fedcomp.analysis import tables as T
from tests.helpers import write_synthetic_run as make_run

T975_1 = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1)
T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
NAMES = ("accuracy_vs_bytes", "pareto", "pareto_uplink", "bytes_per_round", "bytes_breakdown")


def build(root):
    runs, skipped = R.load_runs(root)
    return T.build(runs, skipped)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two tasks; identity and two top-k densities; three seeds (one failed uplink)."""
    root = tmp_path_factory.mktemp("sweep")
    for task in ("mnist", "digits"):
        for seed in range(3):
            make_run(root / task / f"none-{seed}", task=task, seed=seed,
                     metric_values=[0.1, 0.6, 0.85, 0.93 - 0.01 * seed])
            for density, up in ((0.1, 100), (0.01, 20)):
                make_run(root / task / f"topk-{density}-{seed}", task=task, compressor="topk", seed=seed,
                         up_payload=up + 5 * seed, compressor_params={"density": density},
                         metric_values=[0.1, 0.5, 0.8, 0.92 - density - 0.02 * seed],
                         failed=[(2, 1)] if seed else [])
    return root


def curves_frame(values: dict[int, list[float]], bytes_: dict[int, list[float]]) -> pd.DataFrame:
    rows = [{"task": "t", "label": "x", "identity": False, "metric": "accuracy", "round": r, "run_id": f"s{i}",
             "cum_wire": b, "value": v}
            for r in values for i, (v, b) in enumerate(zip(values[r], bytes_[r]))]
    return pd.DataFrame(rows)


def test_curves_are_aggregated_on_the_round():
    agg = figures.aggregate_curves(curves_frame({1: [0.5, 0.7]}, {1: [100.0, 200.0]}), "cum_wire").iloc[0]
    assert agg["n"] == 2 and agg["bytes"] == 150.0 and agg["value"] == pytest.approx(0.6)
    # t(0.975, 1) x 0.1414 / sqrt(2) = 1.27, clipped to the range of accuracy
    assert (agg["low"], agg["high"]) == (0.0, 1.0)
    agg = figures.aggregate_curves(curves_frame({1: [0.5, 0.6, 0.7]}, {1: [1.0, 2.0, 3.0]}), "cum_wire").iloc[0]
    assert agg["high"] == pytest.approx(0.6 + T975_2 * 0.1 / math.sqrt(3))


def test_bands_only_where_three_or_more_seeds():
    for n, bands in ((2, 0), (3, 1)):
        frame = curves_frame({1: [0.5 + 0.01 * i for i in range(n)], 2: [0.6 + 0.01 * i for i in range(n)]},
                             {1: [10.0] * n, 2: [20.0] * n})
        fig = figures.accuracy_vs_bytes(frame)
        assert sum(isinstance(c, PolyCollection) for c in fig.axes[0].collections) == bands
        plt.close(fig)


def test_pareto_front_by_hand():
    runs = pd.DataFrame({
        "task": "t", "metric": "accuracy", "identity": [True, False, False, False, False],
        "label": ["none", "a", "b", "c", "c"],
        "ratio_wire_total": [0.9, 10.0, 20.0, 4.0, 6.0],
        "delta": [0.0, -0.01, -0.05, -0.03, -0.01],
    })
    points = figures.pareto_points(runs).set_index("label")
    assert points.loc["c", "x"] == 5.0 and points.loc["c", "y"] == pytest.approx(-0.02)
    # c (5x, -0.02) is dominated by a (10x, -0.01); none, a, b are not dominated
    assert points["frontier"].to_dict() == {"a": True, "b": True, "c": False, "none": True}
    lm = runs.assign(metric="perplexity", delta=[0.0, 2.0, 3.0, 1.0, 1.0])
    # lower is better: b (20x, +3) is not beaten on both; a (10x, +2) is; c (5x, +1) is not
    assert figures.pareto_points(lm).set_index("label")["frontier"].to_dict() == {
        "a": True, "b": True, "c": True, "none": True}


def pdf_width_inches(path) -> float:
    return float(re.search(rb"/MediaBox \[ 0 0 ([0-9.]+)", path.read_bytes()).group(1)) / 72


def test_every_figure_is_written_at_column_width(sweep, tmp_path):
    written, notes = figures.make_all(build(sweep), tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.{e}" for n in NAMES for e in ("pdf", "png"))
    for name in NAMES:
        pdf = tmp_path / f"{name}.pdf"
        assert b"/FontFile2" in pdf.read_bytes() and b"/Type3" not in pdf.read_bytes()
        assert 2.5 < pdf_width_inches(pdf) <= 3.3 + 0.05, name
    assert notes == []


def test_page_width_puts_tasks_side_by_side(sweep, tmp_path):
    fig = figures.pareto(build(sweep).runs, width="page")
    assert fig.get_figwidth() == 7.0 and fig.axes[0].get_position().y0 == fig.axes[1].get_position().y0
    style.save(fig, tmp_path, "pareto")
    assert 6.0 < pdf_width_inches(tmp_path / "pareto.pdf") <= 7.05


def test_legends_carry_the_compressors_own_labels(sweep):
    rep = build(sweep)
    for fig in (figures.accuracy_vs_bytes(rep.curves, "payload"), figures.pareto(rep.runs, "up"),
                figures.bytes_per_round(rep.rounds, "payload")):
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert {"none", "top-k 1% +EF", "top-k 10% +EF"} <= set(texts)
        assert len(fig.axes) == 2 or len(fig.axes) == 4  # one panel per task (and direction)
        plt.close(fig)
    fig = figures.accuracy_vs_bytes(rep.curves)
    assert fig.axes[0].get_xlabel() == "cumulative wire bytes, down + up"  # wire by default
    plt.close(fig)


def test_bad_measure_and_direction_are_errors(sweep):
    rep = build(sweep)
    with pytest.raises(ValueError, match="bytes measure: 'dense_total'"):
        figures.accuracy_vs_bytes(rep.curves, "dense_total")
    with pytest.raises(ValueError, match="pareto direction: must be up or total"):
        figures.pareto(rep.runs, "down")


def test_pareto_is_left_out_without_an_identity_run(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=10)
    written, notes = figures.make_all(build(tmp_path), tmp_path / "out")
    names = {p.stem for p in written}
    assert "pareto" not in names and {"accuracy_vs_bytes", "bytes_per_round", "bytes_breakdown"} <= names
    assert any(n.startswith("pareto:") for n in notes)
    assert any("n >= 3" in n for n in notes)  # one seed: no interval drawn, and the report says so
