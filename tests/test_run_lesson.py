"""The bandwidth lesson reproduced on Flower's simulation engine with Pythia-14M."""

from fedcomp.engines.launch import execute
from tests.helpers import load_run, run_config

PYTHIA_BYTES = 56_270_848


def test_lesson_bandwidth_measured_equals_formula(tmp_path, capsys):
    summary = execute(run_config(tmp_path, "experiment=lesson_bandwidth"))
    ledger, _, _ = load_run(tmp_path)
    server = ledger[ledger.recorded_by == "server"]
    assert len(server) == 4  # 2 clients x (model down + update up), 1 round
    assert (server["dense_bytes"] == PYTHIA_BYTES).all()
    dense = summary["bytes"]["total"]["dense_bytes"]
    wire = summary["bytes"]["total"]["wire_bytes"]
    assert dense == summary["formula"]["continuous_total"] == 225_083_392
    assert summary["formula"]["lesson_rounding_mb"] == 212
    assert abs(wire - dense) / dense < 0.001
    out = capsys.readouterr().out
    assert "225,083,392 B" in out and "212 MB" in out
    assert "model sent to client 0: dense 56,270,848 B" in out
