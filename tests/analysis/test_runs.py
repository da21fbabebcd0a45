"""fedcomp.analysis.runs: finding runs, what is left out and why, and what each run declares.

Synthetic runs (:func:`tests.helpers.write_synthetic_run`): a 1,000-byte model (250 fp32
values), 4 clients, fraction_fit 0.5 (cohort 2), 100 bytes of framing per message.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fedcomp.analysis import runs as R
from fedcomp.core.rundir import load_run
from tests.helpers import write_synthetic_run as make_run


def test_find_run_dirs_ignores_hidden_directories(tmp_path):
    make_run(tmp_path / "a", compressor="none")
    make_run(tmp_path / "sweep" / "b", compressor="topk")
    (tmp_path / "a" / ".hydra").mkdir()
    (tmp_path / "a" / ".hydra" / "config.yaml").write_text("x: 1\n")  # Hydra's, not a run
    assert [p.relative_to(tmp_path).as_posix() for p in R.find_run_dirs(tmp_path)] == ["a", "sweep/b"]


def test_every_left_out_directory_has_its_reason(tmp_path):
    make_run(tmp_path / "good", compressor="none")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.yaml").write_text("seed: 0\n")
    garbage = make_run(tmp_path / "garbage", compressor="none")
    (garbage / "summary.json").write_text("{not json")
    truncated = make_run(tmp_path / "truncated", compressor="none")
    data = (truncated / "ledger.parquet").read_bytes()
    (truncated / "ledger.parquet").write_bytes(data[: len(data) // 2])
    undeclared = make_run(tmp_path / "undeclared", compressor="none")
    summary = json.loads((undeclared / "summary.json").read_text())
    del summary["compressor"]
    (undeclared / "summary.json").write_text(json.dumps(summary))

    runs, skipped = R.load_runs(tmp_path)
    assert [r.path.name for r in runs] == ["good"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"half", "garbage", "truncated", "undeclared"}
    assert reasons["half"].startswith("incomplete run (missing ledger.parquet, metrics.parquet, summary.json")
    assert reasons["garbage"].startswith("unreadable summary.json")
    assert "ledger.parquet" in reasons["truncated"]
    assert "compressor's declaration" in reasons["undeclared"]


@pytest.mark.parametrize(("where", "message"), [("missing", "no such directory"), ("file", "not a directory")])
def test_a_bad_root_is_a_report_error(tmp_path, where, message):
    root = tmp_path / "x"
    if where == "file":
        root.write_text("")
    with pytest.raises(R.ReportError, match=message):
        R.load_runs(root)


def test_final_window_from_config_override_and_default():
    assert R.final_window({}) == 5
    assert R.final_window({"report": {"final_window": 3}}) == 3
    assert R.final_window({"report": {"final_window": 3}}, override=7) == 7
    for bad in (0, -1, 2.5, "5", True):
        with pytest.raises(R.ReportError, match=r"report\.final_window: must be an integer >= 1"):
            R.final_window({"report": {"final_window": bad}})


def test_a_run_with_a_bad_window_is_rejected_before_it_starts():
    from fedcomp.config import compose_config, to_container, validate
    from fedcomp.core.errors import ConfigError

    assert to_container(compose_config([]))["report"] == {"final_window": 5}
    with pytest.raises(ConfigError, match=r"^report\.final_window: must be an integer >= 1, got 0$"):
        validate(to_container(compose_config(["report.final_window=0"])))


def test_settings_come_from_declarations_not_names(tmp_path):
    # the directory name and the config's compressor name say "none"; the declaration wins
    declared = {"label": "my-method", "identity": False, "lossy": True, "params": {"k": 3, "inner": {"a": 1}},
                "error_feedback": True, "downlink": False, "description": "Mine(k=3)"}
    run = load_run(make_run(tmp_path / "compressor=none,seed=9", compressor="none", seed=1, declaration=declared))
    row = R.settings(run)
    assert (row["method"], row["identity"], row["seed"], row["compressor"]) == ("my-method", False, 1, "none")
    assert (row["param.k"], row["param.inner.a"]) == (3, 1)
    assert (row["num_clients"], row["partition_alpha"], row["error_feedback"]) == (4, 0.5, True)


def test_identity_is_what_the_compressor_declares(tmp_path):
    # the real Channel(Identity()).describe() of conf/compressor/none.yaml
    run = load_run(make_run(tmp_path / "n", compressor="none"))
    assert R.settings(run)["identity"] is True and R.settings(run)["method"] == "none"
    topk = load_run(make_run(tmp_path / "t", compressor="topk", compressor_params={"density": 0.1}))
    row = R.settings(topk)
    assert row["identity"] is False and row["method"] == "top-k 10% +EF" and row["param.density"] == 0.1


def test_round_bytes_and_values_up_by_hand(tmp_path):
    run = load_run(make_run(tmp_path / "t", compressor="topk", up_payload=100, failed=[(2, 1)]))
    rounds = R.round_bytes(run).set_index(["round", "direction"])
    # 2 clients per round; only the server's rows (the ledger holds the client's too)
    assert rounds.loc[(2, "up"), "payload_bytes"] == 200 and rounds.loc[(2, "up"), "wire_bytes"] == 400
    assert rounds.loc[(2, "up"), "messages"] == 2 and rounds.loc[(2, "up"), "failed"] == 1
    assert rounds.loc[(1, "down"), "dense_bytes"] == 2000
    assert R.values_up(run) == 250 * 6  # 250 values per update x 2 clients x 3 rounds


def test_config_identity_drops_what_does_not_change_the_run():
    a = {"seed": 0, "output_dir": "/a", "report": {"final_window": 5},
         "engine": {"name": "simulation", "num_cpus": 2}, "federation": {"num_rounds": 3},
         "compressor": {"density": 0.1}}
    b = {**a, "seed": 1, "output_dir": "/b", "report": {"final_window": 3}, "engine": {"name": "simulation"}}
    assert R.config_identity(a) == R.config_identity(b) == {
        "engine.name": "simulation", "federation.num_rounds": 3, "compressor.density": 0.1}
    assert "compressor.density" not in R.config_identity(a, drop=R.COMPRESSOR_KEYS)


def test_an_empty_list_key_is_the_same_configuration_as_no_key():
    old = {"faults": {"crash": [1]}, "federation": {"num_rounds": 3}}
    new = {"faults": {"crash": [1], "examples": []}, "federation": {"num_rounds": 3}}
    assert R.config_identity(old) == R.config_identity(new)
    assert R.config_identity(new) != R.config_identity({**new, "faults": {"crash": [1], "examples": [2]}})


def test_measures_in_follows_the_ledger_contract(monkeypatch):
    assert R.measures_in(["payload_bytes", "dense_bytes", "x"]) == ["dense_bytes", "payload_bytes"]
    monkeypatch.setattr("fedcomp.core.ledger.MEASURES", ["dense_bytes", "payload_bytes", "wire_bytes", "link_bytes"])
    assert R.measures_in(pd.Index(["link_bytes", "wire_bytes"])) == ["wire_bytes", "link_bytes"]
