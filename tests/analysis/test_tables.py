"""fedcomp.analysis.tables against figures computed by hand on synthetic runs.

Synthetic runs (:func:`tests.helpers.write_synthetic_run`) default to a 1,000-byte model
(250 fp32 values), 4 clients, fraction_fit 0.5 (integer cohort 2), no federated
evaluation, 100 bytes of framing per message, and 3 rounds.
"""

from __future__ import annotations

import json
import math

import pytest

from fedcomp.analysis import runs as R
from fedcomp.analysis import tables as T
from tests.helpers import write_synthetic_run as make_run

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def build(root, metric="accuracy", target=None, window=None):
    runs, skipped = R.load_runs(root)
    return T.build(runs, skipped, metric, target, window)


def row(report, compressor, seed=0):
    found = report.runs[(report.runs["compressor"] == compressor) & (report.runs["seed"] == seed)]
    assert len(found) == 1, found
    return found.iloc[0]


def test_bytes_framing_ratios_and_bits_by_hand(tmp_path):
    make_run(tmp_path / "n", compressor="none")
    make_run(tmp_path / "t", compressor="topk", up_payload=100)
    rep = build(tmp_path)
    ident, topk = row(rep, "none"), row(rep, "topk")
    # 3 rounds x 2 clients = 6 messages per direction
    for r in (ident, topk):
        assert (r["baseline_down"], r["baseline_up"], r["baseline_total"]) == (6000, 6000, 12000)
        assert r["dense_up"] == 6000 and r["dense_total"] == 12000
        assert (r["messages_down"], r["messages_up"]) == (6, 6)
    assert (topk["payload_up"], topk["wire_up"], topk["framing_up"]) == (600, 1200, 600)
    assert (topk["payload_down"], topk["wire_down"], topk["framing_down"]) == (6000, 6600, 600)
    assert topk["framing_total"] == 1200 and topk["framing_per_msg_up"] == 100.0
    assert topk["ratio_payload_up"] == pytest.approx(10.0)
    assert topk["ratio_wire_up"] == pytest.approx(6000 / 1200)
    assert topk["ratio_wire_total"] == pytest.approx(12000 / 7800)
    assert topk["bits_per_entry_up"] == pytest.approx(8 * 600 / (250 * 6))  # 3.2 bits per value
    assert ident["bits_per_entry_up"] == pytest.approx(32.0)
    assert ident["ratio_wire_up"] == pytest.approx(6000 / 6600)  # framing makes identity < 1x


def test_evaluation_messages_count_in_the_baseline_and_the_framing(tmp_path):
    # fraction_evaluate 0.5: 2 evaluation clients a round get the model and reply with metrics only
    make_run(tmp_path / "n", compressor="none", fraction_evaluate=0.5)
    r = row(build(tmp_path), "none")
    assert (r["baseline_down"], r["baseline_up"]) == (12000, 6000)
    assert r["formula_continuous_total"] == 18000.0
    assert r["payload_up"] == 6000 and r["wire_up"] == 6 * 1100 + 6 * 100
    assert r["messages_up"] == 12 and r["bits_per_entry_up"] == pytest.approx(32.0)


def test_byte_totals_are_read_from_summary_json_not_re_summed(tmp_path):
    run = make_run(tmp_path / "t", compressor="topk", up_payload=100)
    summary = json.loads((run / "summary.json").read_text())
    summary["bytes"]["up"]["payload_bytes"] = 123_456  # what the run's ledger.totals wrote is what counts
    (run / "summary.json").write_text(json.dumps(summary))
    assert row(build(tmp_path), "topk")["payload_up"] == 123_456


def test_every_measure_of_the_ledger_contract_is_reported(tmp_path, monkeypatch):
    # a measure the ledger may gain later appears in the tables without a change here
    from fedcomp.core import ledger

    monkeypatch.setattr(ledger, "MEASURES", [*ledger.MEASURES, "future_bytes"])
    make_run(tmp_path / "t", compressor="topk", up_payload=100, extra_measures={"link_bytes": 50, "future_bytes": 20})
    rep = build(tmp_path)
    r = row(rep, "topk")
    assert (r["link_up"], r["link_down"], r["link_total"]) == (300, 300, 600)  # 50 B x 6 messages
    assert r["ratio_link_up"] == pytest.approx(6000 / 300)
    assert (r["future_up"], r["ratio_future_total"]) == (120, pytest.approx(12000 / 240))
    assert rep.curves.set_index("round").loc[3, "cum_link"] == 600
    assert {"link_bytes", "future_bytes"} <= set(rep.rounds.columns)


def test_headline_is_the_mean_of_the_last_window_and_delta_uses_it(tmp_path):
    values = {"none": [0.1, 0.5, 0.9, 0.8, 0.95], "topk": [0.1, 0.4, 0.85, 0.9, 0.8]}
    for name, vals in values.items():
        make_run(tmp_path / name, compressor=name, up_payload=100, metric_values=vals, final_window=3)
    rep = build(tmp_path)
    topk = row(rep, "topk")
    # window 3 from each run's config.yaml: rounds 2..4
    assert topk["final_window"] == 3 and topk["window_used"] == 3
    assert topk["headline"] == pytest.approx((0.85 + 0.9 + 0.8) / 3)
    assert topk["last_round"] == pytest.approx(0.8)
    assert topk["identity_headline"] == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    assert topk["delta"] == pytest.approx((0.85 + 0.9 + 0.8 - 0.9 - 0.8 - 0.95) / 3)  # -0.0333, not -0.15
    # the command line overrides every run's window: rounds 1..4 (4 rounds)
    wide = row(build(tmp_path, window=4), "topk")
    assert wide["headline"] == pytest.approx(0.7375) and wide["delta"] == pytest.approx(0.7375 - 0.7875)


def test_a_window_longer_than_the_run_is_noted(tmp_path):
    make_run(tmp_path / "n", compressor="none")  # 3 rounds, window 5
    rep = build(tmp_path)
    assert row(rep, "none")["window_used"] == 3
    assert any("fewer rounds than final_window" in n for n in rep.notes)


def test_missing_identity_leaves_delta_empty_with_the_reason(tmp_path):
    make_run(tmp_path / "n0", compressor="none", seed=0)
    make_run(tmp_path / "t2", compressor="topk", seed=2)
    make_run(tmp_path / "t0", compressor="topk", seed=0, alpha=0.1, metric_values=[0.1, 0.5, 0.7, 0.8, 0.85])
    make_run(tmp_path / "d0", task="digits", compressor="topk", seed=0)
    rep = build(tmp_path)
    t2, t0, d0 = (rep.runs[rep.runs["path"].str.endswith(name)].iloc[0] for name in ("t2", "t0", "d0"))
    assert math.isnan(t2["delta"]) and t2["delta_note"] == "no identity run of task mnist with seed 2"
    assert math.isnan(t0["delta"]) and "partition.alpha" in t0["delta_note"]
    assert "federation.num_rounds" in t0["delta_note"]
    assert math.isnan(d0["delta"]) and "task digits" in d0["delta_note"]
    assert any("no matching identity run" in n for n in rep.notes)
    assert any("2 tasks in one report" in n for n in rep.notes)


def test_a_run_that_evaluates_nothing_is_said_so_not_blamed_on_its_identity(tmp_path):
    # the lesson's run: one round, no evaluation
    make_run(tmp_path / "n0", compressor="none", central=False, metric_values=[0.0, 0.0])
    make_run(tmp_path / "t0", compressor="topk", central=False, metric_values=[0.0, 0.0])
    rep = build(tmp_path)
    assert rep.runs["headline"].isna().all() and rep.runs["delta"].isna().all()
    assert set(rep.runs["delta_note"]) == {"the run recorded no central metric"}
    assert rep.notes[:1] == ["2 run(s) recorded no central metric (nothing evaluated): no headline, no delta."]
    assert not any("identity" in n or "final_window" in n for n in rep.notes), rep.notes


def test_labels_come_from_the_compressors_and_params_get_columns(tmp_path):
    for density in (0.1, 0.01):
        make_run(tmp_path / f"t{density}", compressor="topk", compressor_params={"density": density})
    make_run(tmp_path / "q", compressor="quant8")
    make_run(tmp_path / "e2", compressor="topk", compressor_params={"density": 0.01}, local_epochs=2)
    rep = build(tmp_path)
    assert sorted(rep.runs["label"]) == sorted(
        ["top-k 10% +EF", "top-k 1% +EF (local_epochs=1)", "top-k 1% +EF (local_epochs=2)", "8-bit"])
    assert "param.density" in rep.runs.columns  # top-k runs differ in it
    assert "param.selection" not in rep.runs.columns and "param.bits" not in rep.runs.columns  # constant


def test_summary_pools_seeds_with_clipped_intervals(tmp_path):
    for seed, last in enumerate([0.98, 0.99, 1.0]):
        make_run(tmp_path / f"n{seed}", compressor="none", seed=seed, metric_values=[0.1, last])
        make_run(tmp_path / f"t{seed}", compressor="topk", seed=seed, up_payload=100 + 10 * seed,
                 metric_values=[0.1, last - 0.1])
    make_run(tmp_path / "t9", compressor="topk", seed=9, up_payload=100, metric_values=[0.1, 0.8])  # no identity
    rep = build(tmp_path)
    s = rep.summary.set_index("label")
    assert list(rep.summary["label"]) == ["none", "top-k 1% +EF"]  # identity first
    assert (s.loc["none", "n"], s.loc["top-k 1% +EF", "n"]) == (3, 4)
    assert s.loc["none", "headline"] == pytest.approx(0.99)
    assert s.loc["none", "headline_ci95"] == pytest.approx(T975_2 * 0.01 / math.sqrt(3))
    assert s.loc["none", "headline_high"] == 1.0  # 0.99 + 0.0248 clipped to the range of accuracy
    assert s.loc["top-k 1% +EF", "delta"] == pytest.approx(-0.1)
    assert s.loc["top-k 1% +EF", "n_delta"] == 3  # seed 9 has no identity run
    assert s.loc["top-k 1% +EF", "payload_up"] == pytest.approx(2 * (100 + 110 + 120 + 100) / 4)  # 2 clients
    assert s.loc["top-k 1% +EF", "seeds"] == "0,1,2,9"
    paper = rep.paper.set_index("label")
    assert {"bits_per_entry_up", "ratio_wire_up", "ratio_wire_total", "headline_low", "delta_high", "n"} <= set(
        rep.paper.columns)
    assert paper.loc["none", "headline_high"] == 1.0


def test_rounds_and_bytes_to_target(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=100, metric_values=[0.1, 0.5, 0.92, 0.95])
    make_run(tmp_path / "b", compressor="topk", seed=1, up_payload=100, metric_values=[0.1, 0.5, 0.6, 0.7])
    make_run(tmp_path / "c", compressor="topk", seed=2, up_payload=100, metric_values=[0.91, 0.5, 0.6, 0.7])
    rep = build(tmp_path, target=0.9)
    hit = row(rep, "topk", 0)
    assert hit["rounds_to_target"] == 2
    assert hit["payload_to_target"] == 2 * 2 * (1000 + 100)
    assert hit["wire_to_target"] == 2 * 2 * (1100 + 200)
    assert math.isnan(row(rep, "topk", 1)["rounds_to_target"])
    assert row(rep, "topk", 2)["rounds_to_target"] == 0 and row(rep, "topk", 2)["wire_to_target"] == 0
    assert rep.summary.iloc[0]["n_rounds_to_target"] == 2


def test_lower_is_better_metric_and_fallback(tmp_path):
    make_run(tmp_path / "a", task="lm", compressor="none", metric="perplexity",
             metric_values=[100.0, 50.0, 30.0, 20.0])
    r = build(tmp_path, metric="perplexity", target=35.0).runs.iloc[0]
    assert r["metric"] == "perplexity" and r["rounds_to_target"] == 2 and r["last_round"] == 20.0
    rep = build(tmp_path, metric="accuracy", target=0.9)
    r = rep.runs.iloc[0]
    assert r["metric"] == "perplexity" and math.isnan(r["rounds_to_target"])
    assert any("use perplexity instead" in n for n in rep.notes)


def test_flower_floor_is_noted(tmp_path):
    make_run(tmp_path / "a", compressor="none", floor=812)
    make_run(tmp_path / "b", compressor="topk", floor={"down": 790, "up": 812})
    rep = build(tmp_path)
    assert row(rep, "none")["floor_bytes"] == 812
    floors = [n for n in rep.notes if n.startswith("Flower's floor")]
    assert any(n.endswith("812 B") for n in floors) and any("down: 790 B, up: 812 B" in n for n in floors)


def test_no_runs_is_a_report_error(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("seed: 0\n")
    runs, skipped = R.load_runs(tmp_path)
    with pytest.raises(R.ReportError, match="(?s)no complete run found.*missing ledger.parquet"):
        T.build(runs, skipped)
