"""What a finished run writes and prints: the metrics frame, ``summary.json``, closing lines.

The byte totals in ``summary.json`` come from :func:`fedcomp.core.ledger.totals` over
the ledger the run writes beside it: computed once, read everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fedcomp.core import ledger as ledger_lib
from fedcomp.core.formula import Estimate, lesson_total_mb
from fedcomp.core.rundir import write_run
from fedcomp.core.units import MIB, human
from fedcomp.flower.strategy import TrackingFedAvg

METRICS_COLUMNS = ["run_id", "round", "scope", "metric", "value"]


def metrics_frame(run_id: str, strategy: TrackingFedAvg, central: dict[int, dict[str, float]]) -> pd.DataFrame:
    """Tidy metrics: run_id, round, scope (central|federated), metric, value."""
    rows = []
    for rnd, values in sorted(central.items()):
        rows += [(run_id, rnd, "central", k, v) for k, v in values.items()]
    for rnd, values in sorted(strategy.log.train_metrics.items()):
        rows += [(run_id, rnd, "federated", k if k.startswith("train") else f"train_{k}", v) for k, v in values.items()]
    for rnd, values in sorted(strategy.log.evaluate_metrics.items()):
        rows += [(run_id, rnd, "federated", f"eval_{k}", v) for k, v in values.items()]
    return pd.DataFrame(rows, columns=METRICS_COLUMNS)


def formula_record(estimate: Estimate) -> dict[str, Any]:
    """The formula's figures for a run, as ``summary.json`` records them."""
    return {
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
    }


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
    estimate = Estimate.for_run(fed, setup.dense_bytes)
    final_round = max(central) if central else None
    summary = {
        "run_id": run_id,
        "task": setup.task.name,
        "compressor_name": cfg.get("compressor_name", ""),
        "compressor": setup.channel.describe(),
        "server": strategy.optimizer.params(),
        "seed": setup.seed,
        "bytes": ledger_lib.totals(ledger, "server"),
        "bytes_client_side": ledger_lib.totals(ledger, "client"),
        "formula": formula_record(estimate),
        "model": {
            "dense_bytes": setup.dense_bytes,
            "num_tensors": len(setup.initial_state),
            "frozen": sorted(setup.frozen),
            "sent_values": int(sum(setup.initial_state[n].size for n in setup.sent_names)),
            "total_values": int(sum(a.size for a in setup.initial_state.values())),
            "checkpoint": setup.task.checkpoint,
        },
        "layout": setup.layout,
        "floor": strategy.floor,
        "downlink": strategy.downlink.summary(),
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


def closing_lines(summary: dict[str, Any], ledger: pd.DataFrame, output_dir: Path, max_messages: int = 8) -> list[str]:
    """The closing lines of a run: measured totals beside the formula.

    Short runs (at most ``max_messages`` server-side rows) list every message. The
    lesson's rounding line appears only where it means something (a model of at
    least 1 MiB, where flooring to whole MiB is the lesson's convention).
    """
    server = ledger[ledger["recorded_by"] == "server"]
    messages = server.to_dict("records") if len(server) <= max_messages else []
    b, f = summary["bytes"], summary["formula"]
    lines = [f"done: {output_dir}"]
    for row in messages:
        verb = "sent to" if row["direction"] == "down" else "received from"
        lines.append(
            f"  round {row['round']} {row['phase']}: model {verb} client {row['partition_id']}: "
            f"dense {row['dense_bytes']:,} B, payload {row['payload_bytes']:,} B, "
            f"wire {row['wire_bytes']:,} B ({row['status']})"
        )
    # what a SuperLink saves depends on timing: an object is not pushed again only if an
    # earlier reply stored it before this one was announced (docs/deployment.md)
    deduplicated = b["total"]["link_bytes"] < b["total"]["wire_bytes"]
    timing = ["                     (if identical replies reach it one after another; pushed at once, both count)"]
    lines += [
        f"  measured dense   : down {human(b['down']['dense_bytes'])} | up {human(b['up']['dense_bytes'])}",
        f"  measured payload : down {human(b['down']['payload_bytes'])} | up {human(b['up']['payload_bytes'])}",
        f"  measured wire    : down {human(b['down']['wire_bytes'])} | up {human(b['up']['wire_bytes'])}",
        f"  measured total   : dense {human(b['total']['dense_bytes'])}; wire {human(b['total']['wire_bytes'])}",
        f"  link (SuperLink) : down {human(b['down']['link_bytes'])} | up {human(b['up']['link_bytes'])}"
        f" | total {human(b['total']['link_bytes'])}",
        *(timing if deduplicated else []),
        f"  object requests  : {human(b['total']['request_bytes'])} (ids around each object transfer; counted by"
        " no one else)",
        f"  numeric ids      : {b['total']['id_bytes']:,} B of wire and link (random run, node and task ids;"
        " the rest is the same in every run)",
        f"  formula          : {human(f['continuous_total'])} (integer cohort: {human(f['cohort_total'])})",
    ]
    floor = summary.get("floor") or {}
    if floor:
        parts = ", ".join(f"{floor[d]:,} B {d}" for d in ("down", "up") if d in floor)
        lines.append(f"  Flower floor     : {parts} per model message (wire of the same message, payload empty)")
    if min(f["bytes_down"], f["bytes_up"]) >= MIB:
        lines.append(f"  lesson rounding  : {f['lesson_rounding_mb']} MB (model size floored to whole MiB)")
    final = ", ".join(f"{k} {v:.4g}" for k, v in summary.get("final_metrics", {}).items())
    lines.append(
        f"  final: {final or 'n/a'}; failures {summary['num_failures']}; wall {summary['wall_time_s']:.1f} s"
    )
    return lines


def print_closing(summary: dict[str, Any], ledger: pd.DataFrame, output_dir: Path, echo: Callable[[str], None] = print) -> None:
    """Print :func:`closing_lines`."""
    for line in closing_lines(summary, ledger, output_dir):
        echo(line)
