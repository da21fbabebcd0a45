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

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fedcomp.core.units import short
from fedcomp.flower.run_config import server_config
from fedcomp.flower.setup import get_setup
from fedcomp.flower.strategy import TrackingFedAvg
from fedcomp.flower.summary import write_results
from fedcomp.optimizers.build import build_optimizer

log = logging.getLogger(__name__)


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
            f"down {short(down):>10}",
            f"up {short(up):>10}",
            f"wire {short(wire):>10}",
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
    strategy = TrackingFedAvg(setup, run_id, build_optimizer(cfg.get("server") or {"name": "fedavg"}))
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


def build_server_app(cfg: dict[str, Any] | None = None) -> ServerApp:
    """The ServerApp; ``cfg`` binds the config (simulation), else it comes from run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_rounds(cfg if cfg is not None else server_config(context, grid), grid)

    return app


app = build_server_app()
