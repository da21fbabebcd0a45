"""Hydra multirun sweeps: one directory per run; an interrupted sweep resumes."""

import subprocess
import sys

from fedcomp.core.rundir import SUMMARY_FILE, is_complete

SWEEP_ARGS = ["task=digits", "partition=iid", "federation.num_clients=2", "federation.fraction_fit=1.0",
              "federation.num_rounds=1", "compressor=none,topk"]


def _sweep(sweep_dir):
    result = subprocess.run(
        [sys.executable, "-m", "fedcomp.run", "-m", f"hydra.sweep.dir={sweep_dir}", *SWEEP_ARGS],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_interrupted_sweep_runs_only_the_missing_runs(tmp_path):
    sweep = tmp_path / "sweep"
    _sweep(sweep)
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 2
    assert "compressor=none" in runs[0].name and "compressor=topk" in runs[1].name
    assert all(is_complete(p) for p in runs)

    done, interrupted = runs
    (interrupted / SUMMARY_FILE).unlink()  # as if the sweep stopped before this run finished
    finished_at = (done / SUMMARY_FILE).stat().st_mtime_ns

    out = _sweep(sweep)
    assert out.count("skip:") == 1 and f"skip: {done}" in out
    assert is_complete(interrupted)
    assert (done / SUMMARY_FILE).stat().st_mtime_ns == finished_at
