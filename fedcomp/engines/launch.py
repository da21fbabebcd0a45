"""Run one experiment on the engine its config names; what every command shares.

``execute`` skips a complete run (resume), validates and builds everything before
any engine starts (:func:`prepare`), runs the engine, checks that the
run wrote its four files and prints the closing lines. ``execute_cli`` maps the
errors to exit codes: 2 for bad input, 1 for an incomplete deployment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from fedcomp.config import validate
from fedcomp.core.env import quiet_environment
from fedcomp.core.errors import ConfigError
from fedcomp.core.rundir import LEDGER_FILE, SUMMARY_FILE, is_complete
from fedcomp.engines.deployment.engine import DeploymentError
from fedcomp.flower.setup import get_setup
from fedcomp.flower.summary import print_closing
from fedcomp.tasks.partitions import load_partitions


def prepare(cfg: dict[str, Any]) -> None:
    """Validate, then build everything the run needs so errors surface before Ray starts.

    Instantiates the task and compressor (their own checks, e.g. density ranges and
    freeze patterns), builds the round-0 model (checkpoint checks) and the partitions
    (empty-partition checks).
    """
    validate(cfg)
    setup = get_setup(cfg)
    load_partitions(setup.task, cfg["partition"], int(cfg["federation"]["num_clients"]), setup.seed)


def run_engine(cfg: dict[str, Any]) -> None:
    """Start the engine ``cfg["engine"]["name"]``; the ServerApp writes the run directory."""
    quiet_environment()
    name = cfg["engine"]["name"]
    if name == "deployment":
        from fedcomp.engines.deployment.engine import deploy

        deploy(cfg)
    else:
        from fedcomp.engines.simulation import simulate  # imports Ray: only when used

        simulate(cfg, verbose=bool(cfg.get("verbose", False)))


def execute(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate ``cfg``, run it on its engine, return the summary (the saved one when skipped)."""
    output_dir = Path(cfg["output_dir"])
    if cfg.get("resume", True) and is_complete(output_dir):
        print(f"skip: {output_dir} is already complete")
        return json.loads((output_dir / SUMMARY_FILE).read_text())
    try:
        prepare(cfg)
    except (ValueError, OSError) as err:  # a component's own check (task, compressor, partition)
        raise ConfigError(str(err)) from err
    run_engine(cfg)
    if not is_complete(output_dir):
        raise RuntimeError(f"the run finished without writing its results to {output_dir}")
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    print_closing(summary, pd.read_parquet(output_dir / LEDGER_FILE), output_dir)
    return summary


def execute_cli(cfg: dict[str, Any]) -> None:
    """:func:`execute` for a command line: bad input exits 2, an incomplete deployment 1."""
    try:
        execute(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except DeploymentError as err:
        print(f"error: deployment incomplete: {err}", file=sys.stderr)
        sys.exit(1)
