"""What a user sees from ``python -m fedcomp.run``: quiet failures, one writer per directory, MLflow."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from fedcomp.core.rundir import check_run, load_run
from tests.test_run_interrupt import Command

SMALL = ["task=digits", "partition=iid", "federation.fraction_fit=1.0"]


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedcomp.run", *args], check=False, capture_output=True,
                          text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["simulation", "inprocess"])
def test_a_run_with_failing_clients_prints_one_line_per_failure(tmp_path, engine):
    result = _run(*SMALL, "federation.num_clients=4", "federation.num_rounds=3", "faults.crash=[1]",
                  "faults.corrupt=[2]", f"engine={engine}", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) < 40, "\n".join(lines)
    for rnd in (1, 2, 3):
        assert f"round {rnd}: client 1 failed: InjectedFault: client 1 crashed in round {rnd} (faults.crash)" in lines
        assert any(line.startswith(f"round {rnd}: client 2 failed: payload does not decode") for line in lines)
    assert not any("Traceback" in line or "\x1b" in line or "ClientAppException" in line for line in lines)
    assert sum("client 1" in line for line in lines) == 3  # one line per failure, no echo of the engine's
    run = load_run(tmp_path)
    reasons = [f["reason"] for f in run.summary["failures"]] + list(run.ledger.loc[run.ledger.status == "failed", "error"])
    assert len(run.summary["failures"]) == 6
    assert all("\n" not in r and "\x1b" not in r and len(r) <= 300 for r in reasons)
    log = (tmp_path / "run.log").read_text()
    assert "Traceback (most recent call last)" in log and "InjectedFault" in log and "\x1b" not in log


@pytest.mark.slow
def test_a_second_run_on_a_directory_in_use_exits_2_and_the_first_keeps_its_results(tmp_path):
    args = [*SMALL, "federation.num_clients=2", "engine=inprocess", f"hydra.run.dir={tmp_path}"]
    first = Command(*args, "federation.num_rounds=40", "client.local_epochs=3")
    first.wait_for(r"^start: ")
    second = _run(*args, "federation.num_rounds=1", "resume=false")
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        (f"error: run directory {tmp_path} is in use by another run (pid {first.proc.pid}); "
         "wait for it to finish or choose another hydra.run.dir")
    ]
    first.wait_for(r"^  final: ")
    assert first.proc.wait(timeout=120) == 0
    assert check_run(tmp_path) is None
    run = load_run(tmp_path)
    assert run.config["federation"]["num_rounds"] == 40 and run.summary["num_rounds"] == 40
    final = ", ".join(f"{k} {v:.4g}" for k, v in run.summary["final_metrics"].items())
    assert first.lines[-1] == (f"  final: {final}; failures 0; wall {run.summary['wall_time_s']:.1f} s")


@pytest.mark.slow
def test_logger_mlflow_writes_a_run_that_search_runs_finds(tmp_path):
    result = _run(*SMALL, "federation.num_clients=2", "federation.num_rounds=2", "engine=inprocess",
                  "logger=mlflow", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mlflow: logged {tmp_path / 'run'} as run " in result.stdout
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'results' / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fedcomp"])
    assert len(runs) == 1
    run_id = runs["run_id"][0]
    ledger = pd.read_parquet(tmp_path / "run" / "ledger.parquet")
    server = ledger[(ledger.recorded_by == "server") & (ledger.direction == "up")]
    expected = server.groupby("round")["payload_bytes"].sum().to_dict()
    history = mlflow.MlflowClient().get_metric_history(run_id, "bytes/up/payload")
    assert {m.step: m.value for m in history} == {r: float(v) for r, v in expected.items()}
    accuracy = mlflow.MlflowClient().get_metric_history(run_id, "central/accuracy")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [m.step for m in accuracy] == [0, 1, 2]
    assert accuracy[-1].value == pytest.approx(summary["final_metrics"]["accuracy"])
