"""logger=mlflow: a finished run, read back from its files, in a real local MLflow store."""

import os

import mlflow
import pytest

from fedcomp.core.rundir import load_run
from fedcomp.tracking.mlflow import flatten, log_if_configured, log_run, tracking_uri_for
from tests.helpers import write_synthetic_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A working directory whose results/mlruns holds the default store (created once: migrations take seconds)."""
    path = tmp_path_factory.mktemp("mlflow")
    previous = os.getcwd()
    os.chdir(path)
    yield path
    os.chdir(previous)


def test_a_run_is_logged_with_params_per_round_bytes_metrics_and_files(store):
    # 4 clients, fraction_fit 0.5: 2 per round, 1,000 B each way, wire = payload + 100 B; 3 rounds
    run = load_run(write_synthetic_run(store / "runs" / "a", compressor="topk", metric_values=(0.1, 0.5, 0.8, 0.9)))
    run_id = log_run(run)
    uri = tracking_uri_for(None)
    assert uri == f"sqlite:///{store / 'results' / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["fedcomp"], output_format="list")
    assert [r.info.run_id for r in found] == [run_id]
    logged = found[0]
    assert logged.data.params["federation.num_clients"] == "4"
    assert logged.data.params["compressor.density"] == "0.01"
    assert logged.data.tags["fedcomp.run_dir"] == str(run.path.resolve())
    assert logged.data.tags["compressor"] == run.summary["compressor"]["label"]
    client = mlflow.MlflowClient()
    history = {m.step: m.value for m in client.get_metric_history(run_id, "bytes/up/wire")}
    assert history == {1: 2200.0, 2: 2200.0, 3: 2200.0}
    accuracy = {m.step: m.value for m in client.get_metric_history(run_id, "central/accuracy")}
    assert accuracy == {0: 0.1, 1: 0.5, 2: 0.8, 3: 0.9}
    assert logged.data.metrics["total/total/payload"] == run.summary["bytes"]["total"]["payload_bytes"] == 12000
    artifacts = sorted(a.path for a in client.list_artifacts(run_id))
    assert artifacts == ["config.yaml", "ledger.parquet", "metrics.parquet", "summary.json"]


def test_a_run_logged_before_is_not_logged_twice(store):
    run = load_run(write_synthetic_run(store / "runs" / "b"))
    assert log_run(run, experiment="twice") == log_run(run, experiment="twice")
    mlflow.set_tracking_uri(tracking_uri_for(None))
    assert len(mlflow.search_runs(experiment_names=["twice"], output_format="list")) == 1


def test_only_when_configured_and_a_failure_is_one_line(store, capsys):
    run = load_run(write_synthetic_run(store / "runs" / "c"))
    assert log_if_configured({"logger": {"name": "none"}}, run) is None
    bad = {"logger": {"name": "mlflow", "tracking_uri": "bogus-scheme://nowhere", "experiment": "x"}}
    assert log_if_configured(bad, run) is None
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"mlflow: {run.path} not logged: ")


def test_flatten_gives_dotted_params():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {"a.b": "1", "a.c": "[1, 2]", "d": "null",
                                                                          "e": "{}"}
