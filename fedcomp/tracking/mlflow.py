"""Log finished runs to MLflow (``logger=mlflow``), so sweeps can be compared in MLflow's UI.

Nothing here hooks into Flower: a run is logged after its four files are written and
read back (:class:`~fedcomp.core.rundir.RunFiles`), so MLflow holds exactly what the
run directory holds:

- params: the resolved config, flattened (``federation.num_clients``...);
- metrics per round (``step`` = round): every metric of ``metrics.parquet`` as
  ``<scope>/<metric>`` (``central/accuracy``, ``federated/train_loss``) and the bytes
  the server recorded that round, ``bytes/<direction>/<measure>`` (``bytes/up/wire``);
- the run totals (``total/<direction>/<measure>``) and the formula's figure;
- tags: the run directory, fedcomp's run id, task and compressor label;
- artifacts: the run directory's files (``config.yaml``, the Parquet files,
  ``summary.json``, ``run.log``).

Where: ``logger.tracking_uri`` (a tracking server ``http://host:5000``, or any URI MLflow
accepts); by default a local SQLite store, ``results/mlruns/mlflow.db``, with the
artifacts beside it (MLflow 3 keeps its plain-file store only behind an opt-out; SQLite
is its local default). See them with
``mlflow ui --backend-store-uri sqlite:///results/mlruns/mlflow.db``.

A run already logged (same run directory and ``summary.json`` checksum) is not logged
again, so resuming a sweep with ``logger=mlflow`` adds the runs MLflow lacks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from fedcomp.core.ledger import MEASURES
from fedcomp.core.rundir import SUMMARY_FILE, RunFiles

#: The local store used when ``logger.tracking_uri`` is null (relative to the working directory).
DEFAULT_STORE = Path("results") / "mlruns"
#: MLflow's limit on a param value's length.
MAX_PARAM_CHARS = 6000


def log_if_configured(cfg: dict[str, Any], run: RunFiles) -> str | None:
    """Log ``run`` when ``cfg["logger"]["name"] == "mlflow"``; return the MLflow run id (else ``None``).

    A failure to log prints one line and leaves the run as it is: the results are on disk.
    """
    logger = cfg.get("logger") or {}
    if logger.get("name") != "mlflow":
        return None
    from mlflow.exceptions import MlflowException  # optional dependency: only when logging

    try:
        run_id = log_run(run, tracking_uri=logger.get("tracking_uri"), experiment=logger.get("experiment") or "fedcomp")
    except (MlflowException, OSError) as err:  # MLflow wraps store and network errors; files: OSError
        print(f"mlflow: {run.path} not logged: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        return None
    print(f"mlflow: logged {run.path} as run {run_id}")
    return run_id


def tracking_uri_for(uri: str | None) -> str:
    """``uri``, or the default local SQLite store under :data:`DEFAULT_STORE`."""
    if uri:
        return uri
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def log_run(run: RunFiles, tracking_uri: str | None = None, experiment: str = "fedcomp") -> str:
    """Log one run directory to MLflow; return its MLflow run id (an existing one if already logged)."""
    import mlflow  # optional dependency: pip install 'fedcomp[mlflow]'

    uri = tracking_uri_for(tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        artifacts = (DEFAULT_STORE / "artifacts").resolve().as_uri() if not tracking_uri else None
        experiment_id = client.create_experiment(experiment, artifact_location=artifacts)
    else:
        experiment_id = found.experiment_id
    digest = hashlib.sha256((run.path / SUMMARY_FILE).read_bytes()).hexdigest()
    run_dir = str(run.path.resolve())
    logged = client.search_runs(
        [experiment_id], filter_string=f"tags.`fedcomp.summary_sha256` = '{digest}'", max_results=50
    )
    for previous in logged:
        if previous.data.tags.get("fedcomp.run_dir") == run_dir:
            return previous.info.run_id
    tags = {
        "fedcomp.run_dir": run_dir,
        "fedcomp.run_id": str(run.summary.get("run_id", run.path.name)),
        "fedcomp.summary_sha256": digest,
        "task": str(run.summary.get("task", "")),
        "compressor": str((run.summary.get("compressor") or {}).get("label", run.summary.get("compressor_name", ""))),
    }
    mlflow_run = client.create_run(experiment_id, run_name=run.path.name, tags=tags)
    run_id = mlflow_run.info.run_id
    try:
        client.log_batch(run_id, params=_params(run.config), metrics=_metrics(run))
        for path in sorted(run.path.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _params(config: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(key, value[:MAX_PARAM_CHARS]) for key, value in flatten(config).items()]


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings as ``{"a.b": "value"}``; lists and scalars become JSON text."""
    if isinstance(node, dict) and node:
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    value = node if isinstance(node, str) else json.dumps(node, default=str)
    return {prefix.rstrip("."): value}


def round_bytes(ledger: pd.DataFrame) -> pd.DataFrame:
    """Server-recorded bytes per round, direction and measure (long form: round, key, value)."""
    server = ledger[ledger["recorded_by"] == "server"]
    sums = server.groupby(["round", "direction"])[MEASURES].sum().reset_index()
    long = sums.melt(id_vars=["round", "direction"], value_vars=MEASURES, var_name="measure")
    long["key"] = "bytes/" + long["direction"] + "/" + long["measure"].str.removesuffix("_bytes")
    return long[["round", "key", "value"]]


def _metrics(run: RunFiles) -> list[Any]:
    from mlflow.entities import Metric

    timestamp = int((run.path / SUMMARY_FILE).stat().st_mtime * 1000)
    rows = [(f"{r.scope}/{r.metric}", float(r.value), int(r.round)) for r in run.metrics.itertuples()]
    rows += [(r.key, float(r.value), int(r.round)) for r in round_bytes(run.ledger).itertuples()]
    for direction, measures in (run.summary.get("bytes") or {}).items():
        rows += [(f"total/{direction}/{m.removesuffix('_bytes')}", float(v), 0) for m, v in measures.items()]
    formula = (run.summary.get("formula") or {}).get("cohort_total")
    if formula is not None:
        rows.append(("total/formula", float(formula), 0))
    return [Metric(key, value, timestamp, step) for key, value, step in rows]
