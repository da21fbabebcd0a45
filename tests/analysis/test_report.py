"""fedcomp.report against hand-computed figures on small synthetic run directories.

The synthetic runs (:func:`fedcomp.report.write_synthetic_run`) default to a 1,000-byte
model, 4 clients, fraction_fit 0.5 (integer cohort 2), no federated evaluation and a
100-byte wire overhead per message, so every figure below can be checked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fedcomp import report as R
from fedcomp.report import write_synthetic_run as make_run

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
T975_1 = 12.706204736174698  # scipy.stats.t.ppf(0.975, 1)


def build(root, metric="accuracy", target=0.9):
    return R.build_report(root, metric=metric, target=target)


def row(report, compressor, seed=0):
    runs = report.runs
    found = runs[(runs["compressor"] == compressor) & (runs["seed"] == seed)]
    assert len(found) == 1, found
    return found.iloc[0]


# --------------------------------------------------------------------------- bytes


def test_baseline_savings_and_ratios(tmp_path):
    # 3 rounds x cohort 2: baseline per direction 1000 x 2 x 3 = 6000 B, total 12000 B
    make_run(tmp_path / "a", compressor="none")
    make_run(tmp_path / "b", compressor="topk", up_payload=100)
    rep = build(tmp_path)
    ident, topk = row(rep, "none"), row(rep, "topk")

    for r in (ident, topk):
        assert (r["baseline_down"], r["baseline_up"], r["baseline_total"]) == (6000, 6000, 12000)
        assert r["formula_continuous_total"] == 12000.0
        assert r["dense_total"] == 12000  # dense equals the formula
    assert ident["saved_payload_total"] == 0 and ident["ratio_up"] == 1.0
    assert ident["wire_total"] == 12 * 1100 and ident["saved_wire_total_pct"] == pytest.approx(-10.0)

    assert topk["payload_up"] == 600 and topk["payload_down"] == 6000
    assert topk["saved_payload_up"] == 5400
    assert topk["saved_payload_up_pct"] == pytest.approx(90.0)
    assert topk["saved_payload_total"] == 5400
    assert topk["saved_payload_total_pct"] == pytest.approx(45.0)
    assert topk["ratio_up"] == pytest.approx(10.0)
    assert topk["ratio_down"] == pytest.approx(1.0)
    assert topk["ratio_total"] == pytest.approx(12000 / 6600)
    # wire: up (100 + 100) x 6 = 1200, down 1100 x 6 = 6600
    assert topk["wire_up"] == 1200 and topk["wire_total"] == 7800
    assert topk["saved_wire_up_pct"] == pytest.approx(80.0)
    assert topk["saved_wire_total_pct"] == pytest.approx(35.0)


def test_baseline_counts_evaluation_and_only_server_rows(tmp_path):
    # fraction_evaluate 0.5: evaluate cohort 2 -> baseline down 1000 x (2 + 2) x 3 = 12000
    make_run(tmp_path / "a", compressor="none", fraction_evaluate=0.5)
    r = row(build(tmp_path), "none")
    assert (r["baseline_down"], r["baseline_up"]) == (12000, 6000)
    # continuous: (1000 + 1000) x 4 x 0.5 x 3 + 1000 x 4 x 0.5 x 3
    assert r["formula_continuous_total"] == 18000.0
    assert r["formula_continuous_down"] == 12000.0 and r["formula_continuous_up"] == 6000.0
    # the ledger holds client rows too; only the server's count (else everything doubles)
    assert r["payload_down"] == 12000 and r["payload_up"] == 6000
    # evaluate replies carry no model (payload 0) but 100 wire bytes each: 6 x 100
    assert r["wire_up"] == 6 * 1100 + 6 * 100
    assert r["saved_wire_up_pct"] == pytest.approx(-20.0)


def test_failed_rows_still_count_as_spent(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=100, failed=[(1, 0)])
    r = row(build(tmp_path), "topk")
    assert r["payload_up"] == 600
    assert r["num_failures"] == 1 and r["failed_messages"] == 1


def test_cumulative_bytes_per_round(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=100)
    rep = build(tmp_path)
    curve = rep.curves.set_index("round")
    assert curve.loc[0, "cum_payload_bytes"] == 0
    assert curve.loc[1, "cum_payload_bytes"] == 2 * 1100
    assert curve.loc[3, "cum_wire_bytes"] == 3 * 2 * (1100 + 200)
    up = rep.rounds[rep.rounds["direction"] == "up"].set_index("round")
    assert up.loc[2, "payload_bytes"] == 200 and up.loc[2, "messages"] == 2


# --------------------------------------------------------------------------- accuracy


def test_accuracy_delta_against_identity_of_same_seed(tmp_path):
    make_run(tmp_path / "n0", compressor="none", seed=0, metric_values=[0.1, 0.5, 0.95])
    make_run(tmp_path / "n1", compressor="none", seed=1, metric_values=[0.1, 0.5, 0.90])
    make_run(tmp_path / "t0", compressor="topk", seed=0, up_payload=10, metric_values=[0.1, 0.4, 0.93])
    make_run(tmp_path / "t1", compressor="topk", seed=1, up_payload=10, metric_values=[0.1, 0.4, 0.85])
    rep = build(tmp_path)
    assert row(rep, "topk", 0)["metric_delta"] == pytest.approx(-0.02)
    assert row(rep, "topk", 1)["metric_delta"] == pytest.approx(-0.05)
    assert row(rep, "topk", 1)["identity_final_metric"] == pytest.approx(0.90)
    assert row(rep, "none", 1)["metric_delta"] == 0.0
    assert row(rep, "topk", 0)["final_metric"] == pytest.approx(0.93)
    assert row(rep, "topk", 0)["final_loss"] == pytest.approx(1 / 3)


def test_missing_identity_leaves_delta_empty_with_note(tmp_path):
    make_run(tmp_path / "n0", compressor="none", seed=0, metric_values=[0.1, 0.5, 0.9])
    # seed 2 has no identity run at all
    make_run(tmp_path / "t2", compressor="topk", seed=2, up_payload=10)
    # seed 0, but a different partition: an identity of another alpha must not be used
    # (and 3 rounds instead of 2)
    make_run(tmp_path / "t0", compressor="topk", seed=0, up_payload=10, alpha=0.1,
             metric_values=[0.1, 0.5, 0.7, 0.8])
    rep = build(tmp_path)
    t2, t0 = row(rep, "topk", 2), row(rep, "topk", 0)
    assert math.isnan(t2["metric_delta"]) and "no identity run" in t2["delta_note"] and "seed 2" in t2["delta_note"]
    assert math.isnan(t0["metric_delta"]) and "partition.alpha" in t0["delta_note"]
    assert "federation.num_rounds" in t0["delta_note"]  # 2 rounds vs 3
    assert any("no matching identity run" in n for n in rep.notes)
    md = R.to_markdown(R.view(rep.runs, R.RUNS_VIEW, with_ci=False))
    assert "nan" not in md.lower()


def test_deltas_stay_within_a_task(tmp_path):
    make_run(tmp_path / "n0", task="mnist", compressor="none")
    make_run(tmp_path / "d0", task="digits", compressor="topk", up_payload=10)
    rep = build(tmp_path)
    assert math.isnan(row(rep, "topk")["metric_delta"])
    assert "task digits" in row(rep, "topk")["delta_note"]
    assert any("2 tasks in one report" in n for n in rep.notes)


def test_settings_come_from_config_not_directory_names(tmp_path):
    make_run(tmp_path / "compressor=topk,seed=9", compressor="none", seed=0)
    r = build(tmp_path).runs.iloc[0]
    assert (r["compressor"], r["seed"], r["partition_alpha"], r["num_clients"]) == ("none", 0, 0.5, 4)
    assert bool(r["is_identity"])


# --------------------------------------------------------------------------- target


def test_bytes_and_rounds_to_target(tmp_path):
    make_run(tmp_path / "a", compressor="topk", up_payload=100, metric_values=[0.1, 0.5, 0.92, 0.95])
    make_run(tmp_path / "b", compressor="topk", seed=1, up_payload=100, metric_values=[0.1, 0.5, 0.6, 0.7])
    make_run(tmp_path / "c", compressor="topk", seed=2, up_payload=100, metric_values=[0.91, 0.5, 0.6, 0.7])
    rep = build(tmp_path, target=0.9)
    hit = row(rep, "topk", 0)
    assert hit["rounds_to_target"] == 2
    assert hit["bytes_to_target_payload"] == 2 * 2 * (1000 + 100)  # 4400
    assert hit["bytes_to_target_wire"] == 2 * 2 * (1100 + 200)  # 5200
    miss = row(rep, "topk", 1)
    assert math.isnan(miss["rounds_to_target"]) and math.isnan(miss["bytes_to_target_payload"])
    assert not miss["target_reached"]
    at_start = row(rep, "topk", 2)  # the initial model already reaches it
    assert at_start["rounds_to_target"] == 0 and at_start["bytes_to_target_payload"] == 0
    summary = rep.summary.iloc[0]
    assert summary["n"] == 3 and summary["n_bytes_to_target_payload"] == 2
    assert summary["bytes_to_target_payload"] == pytest.approx(2200.0)


def test_lower_is_better_metric_and_fallback(tmp_path):
    make_run(tmp_path / "a", task="lm", compressor="none", metric="perplexity",
             metric_values=[100.0, 50.0, 30.0, 20.0])
    rep = build(tmp_path, metric="perplexity", target=35.0)
    r = rep.runs.iloc[0]
    assert r["metric"] == "perplexity" and r["rounds_to_target"] == 2
    assert r["final_perplexity"] == 20.0
    # asked for accuracy: falls back to perplexity, and the accuracy target is not applied
    rep = build(tmp_path, metric="accuracy", target=0.9)
    r = rep.runs.iloc[0]
    assert r["metric"] == "perplexity" and r["final_metric"] == 20.0
    assert math.isnan(r["rounds_to_target"])
    assert any("use perplexity instead" in n for n in rep.notes)


# --------------------------------------------------------------------------- statistics


def test_mean_ci95_student_t():
    mean, half, n = R.mean_ci95([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(T975_2 * 1.0 / math.sqrt(3))  # 2.484
    assert half == pytest.approx(2.484, abs=1e-3)
    mean, half, n = R.mean_ci95([1.0, np.nan, 3.0])
    assert (mean, n) == (2.0, 2) and half == pytest.approx(T975_1 * math.sqrt(2) / math.sqrt(2))
    mean, half, n = R.mean_ci95([5.0])
    assert mean == 5.0 and math.isnan(half) and n == 1
    assert R.mean_ci95([])[2] == 0


def test_summary_pools_seeds_per_config(tmp_path):
    for seed, final in enumerate([0.91, 0.92, 0.93]):
        make_run(tmp_path / f"t{seed}", compressor="topk", seed=seed, up_payload=100,
                 compressor_params={"density": 0.1}, metric_values=[0.1, 0.5, final])
    make_run(tmp_path / "other", compressor="topk", seed=0, up_payload=10,
             compressor_params={"density": 0.01}, metric_values=[0.1, 0.5, 0.8])
    rep = build(tmp_path)
    s = rep.summary.set_index("density")
    assert list(rep.summary["n"]) == [1, 3]
    assert s.loc[0.1, "final_metric"] == pytest.approx(0.92)
    assert s.loc[0.1, "final_metric_ci95"] == pytest.approx(T975_2 * 0.01 / math.sqrt(3))
    assert s.loc[0.1, "saved_payload_up_pct"] == pytest.approx(90.0)
    assert s.loc[0.1, "saved_payload_up_pct_ci95"] == pytest.approx(0.0)
    assert s.loc[0.1, "seeds"] == "0,1,2"
    assert math.isnan(s.loc[0.01, "final_metric_ci95"])
    assert set(rep.runs["label"]) == {"topk (density=0.1)", "topk (density=0.01)"}
    md = R.to_markdown(R.view(rep.summary, R.SUMMARY_VIEW, with_ci=True))
    assert "0.9200 ± 0.0248" in md
    tex = R.to_latex(R.view(rep.summary, R.SUMMARY_VIEW, with_ci=True))
    assert r"0.9200 $\pm$ 0.0248" in tex and r"saved payload up \%" in tex


# --------------------------------------------------------------------------- bad input and CLI


def test_half_written_and_broken_runs_are_skipped(tmp_path, capsys):
    make_run(tmp_path / "good", compressor="none")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.yaml").write_text("seed: 0\n")
    pd.DataFrame({"round": [1]}).to_parquet(half / "ledger.parquet")
    broken = make_run(tmp_path / "broken", compressor="topk")
    (broken / "summary.json").write_text("{not json")
    (tmp_path / "good" / ".hydra").mkdir()
    (tmp_path / "good" / ".hydra" / "config.yaml").write_text("a: 1\n")  # Hydra's, not a run

    runs, skipped = R.load_runs(tmp_path)
    assert [r.path.name for r in runs] == ["good"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"half", "broken"}
    assert "missing metrics.parquet, summary.json" in reasons["half"]
    assert "unreadable summary.json" in reasons["broken"]

    assert R.main([str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2" in out and "half: incomplete run" in out


@pytest.mark.parametrize("layout", ["empty", "missing", "only_half"])
def test_no_runs_is_an_error_exit_2(tmp_path, capsys, layout):
    target = tmp_path / "results"
    if layout != "missing":
        target.mkdir()
    if layout == "only_half":
        (target / "r").mkdir()
        (target / "r" / "config.yaml").write_text("seed: 0\n")
    assert R.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert ("no complete run" in err) if layout != "missing" else ("no such directory" in err)
    if layout == "only_half":
        assert "missing ledger.parquet" in err


def test_cli_writes_tables(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        make_run(sweep / f"compressor=none,seed={seed}", compressor="none", seed=seed)
        make_run(sweep / f"compressor=topk,seed={seed}", compressor="topk", seed=seed, up_payload=100)
    out = tmp_path / "out"
    assert R.main([str(sweep), "--out", str(out), "--no-figures", "--target-accuracy", "0.85"]) == 0
    for name in ("runs", "summary"):
        for ext in ("csv", "md", "tex"):
            assert (out / name).with_suffix(f".{ext}").stat().st_size > 0
    assert (out / "curves.csv").exists() and (out / "rounds.csv").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert {"final_metric", "final_metric_ci95", "n", "saved_payload_up_pct_ci95"} <= set(summary.columns)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and (runs["target"] == 0.85).all()
    stdout = capsys.readouterr().out
    assert "| label | n |" in stdout and "±" in stdout
    assert not (sweep / "report").exists()  # --out honoured


def test_default_out_is_input_report(tmp_path):
    make_run(tmp_path / "r", compressor="none")
    assert R.main([str(tmp_path / "r"), "--no-figures"]) == 0  # a single run directory
    assert (tmp_path / "r" / "report" / "runs.csv").exists()
    # a second report over the parent does not mistake the report folder for a run
    assert R.main([str(tmp_path), "--no-figures"]) == 0
    assert len(pd.read_csv(tmp_path / "report" / "runs.csv")) == 1
