"""fedcomp's ServerApp: run the rounds, print one line per round, write the run's files.

``app`` (module level) is what ``flwr run`` loads; it reads the fedcomp config from the
run config key ``fedcomp-config``. The simulation engine builds the same app with the
config bound directly (:func:`build_server_app`). Either way the ServerApp itself
writes ``config.yaml``, ``ledger.parquet``, ``metrics.parquet`` and ``summary.json``
into ``cfg["output_dir"]``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fedcomp import ledger as ledger_lib
from fedcomp.fl.client_app import config_from_context
from fedcomp.fl.setup import get_setup
from fedcomp.fl.strategy import TrackingFedAvg
from fedcomp.formula import Estimate, lesson_total_mb
from fedcomp.results import write_run

log = logging.getLogger(__name__)


def _fmt_bytes(num: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num >= size:
            return f"{num / size:.2f} {unit}"
    return f"{num:.0f} B"


class RoundPrinter:
    """One concise console line per round: bytes so far, metrics, failures."""

    def __init__(self, strategy: TrackingFedAvg, num_rounds: int, echo: Any = print) -> None:
        self.strategy = strategy
        self.num_rounds = num_rounds
        self.echo = echo

    def line(self, server_round: int, central: dict[str, float]) -> str:
        rows = [r for r in self.strategy.rows if r.round <= server_round]
        down = sum(r.payload_bytes for r in rows if r.direction == "down")
        up = sum(r.payload_bytes for r in rows if r.direction == "up")
        wire = sum(r.wire_bytes for r in rows)
        parts = [
            f"round {server_round:>3}/{self.num_rounds}",
            f"down {_fmt_bytes(down):>10}",
            f"up {_fmt_bytes(up):>10}",
            f"wire {_fmt_bytes(wire):>10}",
        ]
        parts += [f"{k} {v:.4g}" for k, v in central.items() if k != "num_examples"]
        failures = sum(1 for f in self.strategy.failures if f.round <= server_round)
        if failures:
            parts.append(f"FAILURES {failures}")
        return "  ".join(parts)


def run_rounds(cfg: dict[str, Any], grid: Grid) -> dict[str, Any]:
    """Run the federated rounds on ``grid`` and write the run directory; return the summary."""
    started = time.time()
    setup = get_setup(cfg)
    output_dir = Path(cfg["output_dir"])
    run_id = output_dir.name
    strategy = TrackingFedAvg(setup, run_id)
    num_rounds = int(cfg["federation"]["num_rounds"])
    printer = RoundPrinter(strategy, num_rounds)
    central_log: dict[int, dict[str, float]] = {}
    evaluate_central = bool(cfg.get("evaluation", {}).get("central", True)) and bool(
        cfg["client"].get("train", True)
    )

    def evaluate_fn(server_round: int, _arrays: ArrayRecord) -> MetricRecord | None:
        metrics: dict[str, float] = {}
        if evaluate_central:
            model = setup.model_with(strategy.global_state)
            metrics = {k: float(v) for k, v in setup.task.evaluate(model, setup.task.test_dataset()).items()}
            central_log[server_round] = metrics
        if server_round > 0:
            printer.echo(printer.line(server_round, metrics))
        return MetricRecord(metrics) if metrics else None

    strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=num_rounds, evaluate_fn=evaluate_fn)
    summary = write_results(cfg, strategy, central_log, time.time() - started)
    return summary


def metrics_frame(run_id: str, strategy: TrackingFedAvg, central: dict[int, dict[str, float]]) -> pd.DataFrame:
    """Tidy metrics: run_id, round, scope (central|federated), metric, value."""
    rows = []
    for rnd, values in sorted(central.items()):
        rows += [(run_id, rnd, "central", k, v) for k, v in values.items()]
    for rnd, values in sorted(strategy.log.train_metrics.items()):
        rows += [(run_id, rnd, "federated", k if k.startswith("train") else f"train_{k}", v) for k, v in values.items()]
    for rnd, values in sorted(strategy.log.evaluate_metrics.items()):
        rows += [(run_id, rnd, "federated", f"eval_{k}", v) for k, v in values.items()]
    return pd.DataFrame(rows, columns=["run_id", "round", "scope", "metric", "value"])


def write_results(
    cfg: dict[str, Any], strategy: TrackingFedAvg, central: dict[int, dict[str, float]], wall_s: float
) -> dict[str, Any]:
    """Build the ledger, metrics and summary and write all four files atomically."""
    setup = strategy.setup
    run_id = strategy.run_id
    ledger = ledger_lib.to_frame([*strategy.rows, *strategy.client_rows])
    ledger = ledger.sort_values(
        ["recorded_by", "round", "phase", "partition_id", "direction"], kind="stable", ignore_index=True
    )
    metrics = metrics_frame(run_id, strategy, central)
    fed = cfg["federation"]
    estimate = Estimate(
        bytes_down=setup.dense_bytes,
        bytes_up=setup.dense_bytes,
        num_clients=int(fed["num_clients"]),
        fraction_fit=float(fed["fraction_fit"]),
        num_rounds=int(fed["num_rounds"]),
        fraction_evaluate=float(fed["fraction_evaluate"]),
        min_fit_clients=int(fed.get("min_fit_clients", 1)),
    )
    final_round = max(central) if central else None
    summary = {
        "run_id": run_id,
        "task": setup.task.name,
        "compressor": cfg.get("compressor_name", ""),
        "transform": setup.compression.transform.describe(),
        "seed": setup.seed,
        "bytes": ledger_lib.totals(ledger, "server"),
        "bytes_client_side": ledger_lib.totals(ledger, "client"),
        "formula": {
            "bytes_down": estimate.bytes_down,
            "bytes_up": estimate.bytes_up,
            "continuous_total": estimate.total,
            "continuous_train_total": estimate.train_total,
            "cohort_fit": estimate.fit_cohort,
            "cohort_evaluate": estimate.evaluate_cohort,
            "cohort_total": estimate.cohort_total,
            "cohort_down_total": estimate.cohort_down_total,
            "cohort_up_total": estimate.cohort_up_total,
            "lesson_rounding_mb": lesson_total_mb(estimate.bytes_down, estimate.bytes_up, estimate),
        },
        "model": {
            "dense_bytes": setup.dense_bytes,
            "num_tensors": len(setup.initial_state),
            "frozen": sorted(setup.frozen),
            "sent_values": int(sum(setup.initial_state[n].size for n in setup.sent_names)),
            "total_values": int(sum(a.size for a in setup.initial_state.values())),
            "checkpoint": setup.task.checkpoint,
        },
        "failures": [f.__dict__ for f in strategy.failures],
        "num_failures": len(strategy.failures),
        "final_metrics": central.get(final_round, {}) if final_round is not None else {},
        "partitions": strategy.partition_stats,
        "num_rounds": int(fed["num_rounds"]),
        "wall_time_s": round(wall_s, 3),
    }
    config_yaml = yaml.safe_dump(cfg, sort_keys=False)
    write_run(Path(cfg["output_dir"]), config_yaml, ledger, metrics, summary)
    return summary


def build_server_app(cfg: dict[str, Any] | None = None) -> ServerApp:
    """The ServerApp; ``cfg`` binds the config (simulation), else it comes from run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_rounds(cfg if cfg is not None else config_from_context(context), grid)

    return app


app = build_server_app()
