"""``python -m fedcomp.report`` end to end on synthetic runs: files, exit codes, left-out runs,
the headline window, and a new compressor's own label reaching the tables."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from fedcomp import report
from tests.helpers import write_synthetic_run as make_run

TOY = textwrap.dedent('''
    """A compressor that exists only in this test: send every ``step``-th entry."""
    import numpy as np

    from fedcomp.compressors.base import Compressor, Encoded


    class EveryNth(Compressor):
        lossy = True

        def __init__(self, step: int = 3):
            self.step = step

        def encode(self, tensors, rng):
            return Encoded({k: v.ravel()[:: self.step].copy() for k, v in tensors.items()},
                           {k: list(v.shape) for k, v in tensors.items()})

        def decode(self, encoded):
            out = {}
            for name, shape in encoded.meta.items():
                flat = np.zeros(int(np.prod(shape)), dtype=np.float32)
                flat[:: self.step] = encoded.arrays[name]
                out[name] = flat.reshape(shape)
            return out

        def label(self):
            return f"1 in {self.step}"
''')


def test_a_new_compressors_label_comes_from_its_own_module(tmp_path, monkeypatch, capsys):
    """Issue 13: one module + one config section, and its label reaches the report."""
    (tmp_path / "toy_codec.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    section = {"_target_": "toy_codec.EveryNth", "step": 3, "error_feedback": True, "downlink": False}
    runs = tmp_path / "runs"
    make_run(runs / "none", compressor="none")
    make_run(runs / "toy", compressor="every_nth", compressor_section=section, up_payload=334)
    assert report.main([str(runs), "--out", str(tmp_path / "out"), "--no-figures"]) == 0
    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    toy = table[table["compressor"] == "every_nth"].iloc[0]
    assert toy["label"] == "1 in 3 +EF" and toy["method"] == "1 in 3 +EF" and not toy["identity"]
    assert "1 in 3 +EF" in (tmp_path / "out" / "paper.tex").read_text()
    assert "| 1 in 3 +EF |" in capsys.readouterr().out


def test_tables_left_out_runs_and_exit_code(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        make_run(sweep / f"compressor=none,seed={seed}", compressor="none", seed=seed)
        make_run(sweep / f"compressor=topk,seed={seed}", compressor="topk", seed=seed, up_payload=100)
    half = sweep / "interrupted"
    half.mkdir()
    (half / "config.yaml").write_text("seed: 0\n")
    broken = make_run(sweep / "broken", compressor="none", seed=7)
    (broken / "metrics.parquet").write_bytes(b"not parquet")
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out), "--no-figures", "--target-accuracy", "0.85"]) == 0
    stdout = capsys.readouterr().out
    assert "6 run(s), 2 configuration(s)" in stdout
    assert "skipped 2 directory(ies) (also in skipped.csv):" in stdout
    assert f"{half}: incomplete run (missing ledger.parquet" in stdout and f"{broken}: metrics.parquet" in stdout
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["path"]) == sorted([str(broken), str(half)])
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and (runs["target"] == 0.85).all()
    assert not (sweep / "report").exists()  # --out honoured


def test_final_window_option_overrides_the_runs_config(tmp_path):
    make_run(tmp_path / "r", compressor="none", metric_values=[0.1, 0.2, 0.4, 0.6], final_window=1)
    assert report.main([str(tmp_path), "--no-figures"]) == 0
    assert pd.read_csv(tmp_path / "report" / "runs.csv")["headline"].iloc[0] == pytest.approx(0.6)
    assert report.main([str(tmp_path), "--no-figures", "--final-window", "2"]) == 0
    assert pd.read_csv(tmp_path / "report" / "runs.csv")["headline"].iloc[0] == pytest.approx(0.5)


def test_bad_window_is_exit_2_naming_the_key(tmp_path, capsys):
    make_run(tmp_path / "r", compressor="none", final_window=0)
    assert report.main([str(tmp_path), "--no-figures"]) == 2
    assert capsys.readouterr().err == "error: report.final_window: must be an integer >= 1, got 0\n"
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path), "--final-window", "0"])
    assert exit_info.value.code == 2
    assert "--final-window: must be an integer >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["empty", "missing", "only_half"])
def test_no_runs_is_exit_2(tmp_path, capsys, layout):
    target = tmp_path / "results"
    if layout != "missing":
        target.mkdir()
    if layout == "only_half":
        (target / "r").mkdir()
        (target / "r" / "config.yaml").write_text("seed: 0\n")
    assert report.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert ("no complete run" in err) if layout != "missing" else ("no such directory" in err)
    if layout == "only_half":
        assert "missing ledger.parquet" in err


def test_figures_follow_the_options(tmp_path, capsys):
    make_run(tmp_path / "n", compressor="none")
    make_run(tmp_path / "t", compressor="topk", up_payload=100)
    assert report.main([str(tmp_path), "--bytes", "payload", "--width", "page"]) == 0
    out = tmp_path / "report"
    assert {p.name for p in out.glob("*.pdf")} == {
        "accuracy_vs_bytes.pdf", "pareto.pdf", "pareto_uplink.pdf", "bytes_per_round.pdf", "bytes_breakdown.pdf"}
    assert "note: figures draw 95% intervals only where n >= 3 seeds." in capsys.readouterr().out


def test_the_report_folder_is_not_mistaken_for_a_run(tmp_path):
    make_run(tmp_path / "r", compressor="none")
    assert report.main([str(tmp_path / "r"), "--no-figures"]) == 0  # a single run directory
    assert (tmp_path / "r" / "report" / "runs.csv").exists()
    assert report.main([str(tmp_path), "--no-figures"]) == 0
    assert len(pd.read_csv(tmp_path / "report" / "runs.csv")) == 1
