"""Helpers for tests: real small runs, and hand-checkable synthetic run directories."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fedcomp.compressors.build import build_channel
from fedcomp.config import compose_config, to_container
from fedcomp.core import ledger as ledger_lib
from fedcomp.core.formula import Estimate
from fedcomp.core.paths import CONF_DIR
from fedcomp.core.rundir import write_run


def run_config(tmp_path: Path, *overrides: str) -> dict:
    """A resolved run config writing into ``tmp_path``."""
    return to_container(compose_config([*overrides, f"output_dir={tmp_path}"]))


def load_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """ledger, metrics and summary of a finished run."""
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    return ledger, metrics, summary


#: A fast digits federation: 4 clients, 3 of them per round, 2 rounds.
DIGITS_SMALL = (
    "task=digits",
    "partition=iid",
    "federation.num_clients=4",
    "federation.fraction_fit=0.75",
    "federation.num_rounds=2",
)


#: A CNN-shaped set of tensor names and shapes (conv*/fc*, like the image tasks' models)
#: for transform tests.
MNIST_SHAPES = {
    "conv1.weight": (32, 1, 3, 3),
    "conv1.bias": (32,),
    "conv2.weight": (64, 32, 3, 3),
    "conv2.bias": (64,),
    "fc1.weight": (128, 1600),
    "fc1.bias": (128,),
    "fc2.weight": (10, 128),
    "fc2.bias": (10,),
}


def compressor_config(name: str, **params: Any) -> dict[str, Any]:
    """``conf/compressor/<name>.yaml`` with ``params`` overriding its keys."""
    return {**yaml.safe_load((CONF_DIR / "compressor" / f"{name}.yaml").read_text()), **params}


def write_synthetic_run(
    run_dir: Path,
    *,
    task: str = "mnist",
    compressor: str = "none",
    compressor_params: dict[str, Any] | None = None,
    compressor_section: dict[str, Any] | None = None,
    declaration: dict[str, Any] | None = None,
    seed: int = 0,
    metric_values: Sequence[float] = (0.1, 0.5, 0.8, 0.9),
    metric: str = "accuracy",
    model_bytes: int = 1000,
    up_payload: int | None = None,
    down_payload: int | None = None,
    wire_overhead: int = 100,
    extra_measures: dict[str, int] | None = None,
    num_clients: int = 4,
    fraction_fit: float = 0.5,
    fraction_evaluate: float = 0.0,
    local_epochs: int = 1,
    alpha: float = 0.5,
    final_window: int | None = None,
    floor: Any = None,
    failed: Sequence[tuple[int, int]] = (),
    central: bool = True,
) -> Path:
    """Write a small, hand-checkable run directory (the four files) for report tests.

    Rounds: ``len(metric_values) - 1`` (``metric_values[r]`` is the central metric after
    round ``r``, round 0 = the initial model). Every round the integer cohort of
    :class:`~fedcomp.core.formula.Estimate` trains: one ``down`` message of ``down_payload``
    (default ``model_bytes``) and one ``up`` message of ``up_payload`` (default
    ``model_bytes``) per client, dense ``model_bytes`` each, wire = payload +
    ``wire_overhead``; evaluation messages carry the model down and a metrics-only reply
    (payload 0, wire ``wire_overhead``) up. Rows are written for the server and again for
    the client side. ``failed`` lists ``(round, partition_id)`` uplinks marked failed;
    ``central=False`` leaves out the central metrics (a run that evaluates nothing).
    Every other measure of :data:`fedcomp.core.ledger.MEASURES` (``link_bytes``, ...) is the
    wire size and ``id_bytes`` is 0 unless ``extra_measures`` sets them (e.g.
    ``{"link_bytes": 50}``: 50 B per row).

    The compressor section of ``config.yaml`` is ``compressor_section`` when given (e.g. a
    compressor in a module of the test's own), else ``conf/compressor/<compressor>.yaml``
    with ``compressor_params``; ``summary["compressor"]`` is the real ``Channel.describe()``
    of that section (:func:`fedcomp.compressors.build.build_channel`), or ``declaration``
    when given. ``summary["bytes"]`` comes from :func:`fedcomp.core.ledger.totals`, as in a run.
    """
    num_rounds = len(metric_values) - 1
    up_payload = model_bytes if up_payload is None else up_payload
    down_payload = model_bytes if down_payload is None else down_payload
    est = Estimate(model_bytes, model_bytes, num_clients, fraction_fit, num_rounds,
                   fraction_evaluate=fraction_evaluate)
    run_id = f"{task}-{compressor}-{seed}-{run_dir.name}"
    rows = []

    def add(rnd: int, phase: str, pid: int, direction: str, dense: int, payload: int, status: str) -> None:
        kind = "model" if direction == "down" else "update" if dense else "metrics"
        wire = payload + wire_overhead
        others = {m: (extra_measures or {}).get(m, wire) for m in ledger_lib.MEASURES[3:]}
        others["id_bytes"] = (extra_measures or {}).get("id_bytes", 0)
        for side in ("server", "client"):
            rows.append({
                "run_id": run_id, "round": rnd, "phase": phase, "partition_id": pid, "node_id": 1000 + pid,
                "direction": direction, "recorded_by": side, "kind": kind, "dense_bytes": dense,
                "payload_bytes": payload, "wire_bytes": wire, **others, "status": status,
                "error": "InjectedFault: failed" if status == "failed" else "",
            })

    for rnd in range(1, num_rounds + 1):
        for pid in range(est.fit_cohort):
            add(rnd, "train", pid, "down", model_bytes, down_payload, "ok")
            add(rnd, "train", pid, "up", model_bytes, up_payload, "failed" if (rnd, pid) in set(failed) else "ok")
        for pid in range(est.evaluate_cohort):
            add(rnd, "evaluate", pid, "down", model_bytes, down_payload, "ok")
            add(rnd, "evaluate", pid, "up", 0, 0, "ok")
    ledger = pd.DataFrame(rows).astype({"node_id": "uint64"})
    other = "loss" if metric != "loss" else "accuracy"
    evaluated = [(run_id, r, "central", metric, float(v)) for r, v in enumerate(metric_values)] + [
        (run_id, r, "central", other, 1.0 / (r + 1)) for r in range(num_rounds + 1)
    ]
    metrics = pd.DataFrame(
        (evaluated if central else [])
        + [(run_id, r, "federated", "train_loss", 1.0 / r) for r in range(1, num_rounds + 1)],
        columns=["run_id", "round", "scope", "metric", "value"],
    )
    comp = compressor_section or compressor_config(compressor, **(compressor_params or {}))
    config = {
        "task": {"_target_": f"fedcomp.tasks.{task}.Task"},
        "compressor": comp,
        "partition": {"_target_": "fedcomp.tasks.partitions.dirichlet", "alpha": alpha},
        "engine": {"name": "simulation", "num_cpus": None},
        "seed": seed,
        "federation": {"num_clients": num_clients, "fraction_fit": fraction_fit,
                       "fraction_evaluate": fraction_evaluate, "num_rounds": num_rounds, "min_fit_clients": 1},
        "client": {"local_epochs": local_epochs, "local_steps": None, "train": True, "update": "delta"},
        "compressor_name": compressor,
        "task_name": task,
        "output_dir": str(run_dir),
    }
    if final_window is not None:
        config["report"] = {"final_window": final_window}
    summary = {
        "run_id": run_id, "task": task, "compressor_name": compressor,
        "compressor": declaration if declaration is not None else build_channel(comp).describe(),
        "seed": seed,
        "bytes": ledger_lib.totals(ledger, "server"),
        "formula": {"bytes_down": model_bytes, "bytes_up": model_bytes, "continuous_total": est.total,
                    "continuous_train_total": est.train_total, "cohort_fit": est.fit_cohort,
                    "cohort_evaluate": est.evaluate_cohort, "cohort_total": est.cohort_total,
                    "cohort_down_total": est.cohort_down_total, "cohort_up_total": est.cohort_up_total},
        "model": {"dense_bytes": model_bytes, "sent_values": model_bytes // 4, "total_values": model_bytes // 4},
        "num_failures": len(failed), "failures": [{"round": r, "partition_id": p} for r, p in failed],
        "final_metrics": {metric: float(metric_values[-1])}, "num_rounds": num_rounds, "wall_time_s": 1.0,
    }
    if floor is not None:
        summary["floor"] = floor
    write_run(Path(run_dir), yaml.safe_dump(config, sort_keys=False), ledger, metrics, summary)
    return Path(run_dir)
