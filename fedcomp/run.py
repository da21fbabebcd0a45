"""``python -m fedcomp.run``: one federated run (or a Hydra multirun sweep with ``-m``).

Examples
--------
``python -m fedcomp.run``                                     mnist, identity, 20 rounds
``python -m fedcomp.run compressor=topk compressor.density=0.05``
``python -m fedcomp.run experiment=lesson_bandwidth``        the 212 MB lesson
``python -m fedcomp.run -m compressor=none,topk,quant8 seed=0,1,2``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fedcomp.config import ConfigError, prepare, to_container
from fedcomp.results import SUMMARY_FILE, is_complete


def execute(cfg: dict) -> dict:
    """Validate ``cfg``, run it on its engine, return the summary (the saved one when skipped)."""
    output_dir = Path(cfg["output_dir"])
    if cfg.get("resume", True) and is_complete(output_dir):
        print(f"skip: {output_dir} is already complete")
        return json.loads((output_dir / SUMMARY_FILE).read_text())
    try:
        prepare(cfg)
    except (ValueError, OSError) as err:  # a component's own check (task, compressor, partition)
        raise ConfigError(str(err)) from err
    if cfg["engine"]["name"] == "deployment":
        from fedcomp.deploy import deploy

        deploy(cfg)
    else:
        from fedcomp.engine import simulate

        simulate(cfg, verbose=bool(cfg.get("verbose", False)))
    if not is_complete(output_dir):
        raise RuntimeError(f"the run finished without writing its results to {output_dir}")
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    print_summary(summary, output_dir)
    return summary


def print_summary(summary: dict, output_dir: Path, max_messages: int = 8) -> None:
    """The closing lines of a run: measured totals beside the formula.

    Short runs (at most ``max_messages`` server-side rows) list every message.
    """
    import pandas as pd

    from fedcomp.formula import human
    from fedcomp.results import LEDGER_FILE

    ledger = pd.read_parquet(output_dir / LEDGER_FILE)
    server = ledger[ledger["recorded_by"] == "server"]
    messages = server.to_dict("records") if len(server) <= max_messages else []

    b = summary["bytes"]
    f = summary["formula"]
    print(f"done: {output_dir}")
    if messages:
        for row in messages:
            verb = "sent to" if row["direction"] == "down" else "received from"
            print(
                f"  round {row['round']} {row['phase']}: model {verb} client {row['partition_id']}: "
                f"dense {row['dense_bytes']:,} B, payload {row['payload_bytes']:,} B, "
                f"wire {row['wire_bytes']:,} B ({row['status']})"
            )
    print(f"  measured dense   : down {human(b['down']['dense_bytes'])} | up {human(b['up']['dense_bytes'])}")
    print(f"  measured payload : down {human(b['down']['payload_bytes'])} | up {human(b['up']['payload_bytes'])}")
    print(f"  measured wire    : down {human(b['down']['wire_bytes'])} | up {human(b['up']['wire_bytes'])}")
    print(f"  measured total   : dense {human(b['total']['dense_bytes'])}; wire {human(b['total']['wire_bytes'])}")
    print(f"  formula          : {human(f['continuous_total'])} (integer cohort: {human(f['cohort_total'])})")
    print(f"  lesson rounding  : {f['lesson_rounding_mb']} MB (model size floored to whole MiB)")
    final = ", ".join(f"{k} {v:.4g}" for k, v in summary.get("final_metrics", {}).items())
    print(f"  final: {final or 'n/a'}; failures {summary['num_failures']}; wall {summary['wall_time_s']:.1f} s")


def execute_cli(cfg: DictConfig) -> None:
    """:func:`execute` for a command line: bad input exits 2, an incomplete deployment 1."""
    from fedcomp.deploy import DeploymentError

    try:
        execute(to_container(cfg))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except DeploymentError as err:
        print(f"error: deployment incomplete: {err}", file=sys.stderr)
        sys.exit(1)


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    execute_cli(cfg)


if __name__ == "__main__":
    main()
