"""Run one experiment on the engine its config names; what every command shares.

:func:`execute`, in order:

1. refuses a run directory another run is writing (:class:`~fedcomp.core.lock.RunDirInUse`);
2. resume: skips a run whose files read back and agree (:func:`~fedcomp.core.rundir.check_run`)
   and whose ``config.yaml`` holds the same settings, and redoes anything else, with a
   line saying why;
3. :func:`prepare`: validates and builds everything before any engine starts;
4. holds the directory's lock for the run's lifetime, removes a stale ``summary.json``
   (the directory is incomplete until this run writes its own), prints a status line and
   runs the engine, with the run's logging (:mod:`.logs`), the progress display
   (:mod:`.progress`) and the directory named to the interrupt handler (:mod:`.interrupt`);
5. reads the run back, still under the lock, so the closing lines can only be this
   run's numbers; then calls ``on_complete`` (the MLflow logger, when configured).

:func:`execute_cli` maps the outcome to exit codes: 2 for bad input or a directory in
use, 1 for a failed run or deployment, ``128 + signal`` for an interrupt.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcomp.config import validate
from fedcomp.core.env import quiet_environment
from fedcomp.core.errors import ConfigError, one_line
from fedcomp.core.lock import lock_run_dir, refuse_if_locked
from fedcomp.core.rundir import RUN_FILES, SUMMARY_FILE, RunFiles, check_run, load_run
from fedcomp.core.units import short
from fedcomp.engines import interrupt
from fedcomp.engines.deployment.errors import DeploymentError, Interrupted
from fedcomp.engines.logs import run_logging
from fedcomp.engines.progress import run_progress
from fedcomp.flower.setup import get_setup
from fedcomp.flower.summary import print_closing
from fedcomp.optimizers.build import build_optimizer
from fedcomp.tasks.partitions import load_partitions

log = logging.getLogger(__name__)

#: Called with the config and the finished (or skipped) run's files.
OnComplete = Callable[[dict[str, Any], RunFiles], None]


class RunFailed(RuntimeError):
    """The engine stopped with an error; the message is one line, the traceback is in run.log."""


@dataclass(frozen=True)
class Plan:
    """What :func:`prepare` built: enough to say in one line what is starting."""

    task: str
    num_clients: int
    partition: str
    pool_examples: int
    model_bytes: int
    compressor: str
    num_rounds: int
    engine: str

    def describe(self) -> str:
        """One status line: data, model, compressor, rounds and what the engine starts."""
        return (
            f"start: {self.task}, {self.num_clients} clients ({self.partition}, {self.pool_examples:,} examples), "
            f"model {short(self.model_bytes)}, compressor {self.compressor}, "
            f"{self.num_rounds} rounds; {self.engine}"
        )


def engine_description(cfg: dict[str, Any]) -> str:
    """What the engine of ``cfg`` starts before round 1 (Ray and its actors, processes...)."""
    engine, clients = cfg["engine"], int(cfg["federation"]["num_clients"])
    if engine["name"] == "inprocess":
        return "engine inprocess: ClientApps in this process, no Ray"
    if engine["name"] == "flwr":
        return f"engine flwr: starting a local SuperLink, then `flwr run` with {clients} simulated SuperNodes on Ray"
    if engine["name"] == "deployment":
        if engine.get("superlink_address"):
            return f"engine deployment: using the SuperLink at {engine['superlink_address']}"
        return f"engine deployment: starting a SuperLink and {clients} SuperNodes (about 10 s)"
    if engine["name"] == "flwr":
        return f"engine flwr: starting a local SuperLink with Flower's simulation runtime ({clients} SuperNodes)"
    if engine.get("ray_address"):
        return f"engine simulation: attaching to Ray at {engine['ray_address']}"
    cpus = int(engine.get("num_cpus") or os.cpu_count() or 1)
    per_actor = float((engine.get("client_resources") or {}).get("num_cpus", 1))
    actors = max(1, min(clients, int(cpus // per_actor))) if per_actor > 0 else clients
    return f"engine simulation: starting Ray ({cpus} CPUs, {actors} ClientApp actors; about 15 s)"


def prepare(cfg: dict[str, Any]) -> Plan:
    """Validate, then build everything the run needs so errors surface before any engine starts.

    Instantiates the task and compressor (their own checks, e.g. density ranges and
    freeze patterns), builds the round-0 model (checkpoint checks) and the partitions
    (empty-partition checks). Raises :class:`ConfigError` naming the key.
    """
    validate(cfg)
    try:
        setup = get_setup(cfg)
        build_optimizer(cfg.get("server") or {"name": "fedavg"})
        num_clients = int(cfg["federation"]["num_clients"])
        partitions = load_partitions(setup.task, cfg["partition"], num_clients, setup.seed)
    except (ValueError, OSError) as err:  # a component's own check (task, compressor, partition)
        raise ConfigError(one_line(str(err), 1000)) from err
    target = str((cfg["partition"] or {}).get("_target_", "")).rsplit(".", 1)[-1]
    return Plan(
        task=setup.task.name, num_clients=num_clients, partition=target.removesuffix("Partitioner").lower(),
        pool_examples=sum(len(p) for p in partitions), model_bytes=setup.dense_bytes,
        compressor=str(cfg.get("compressor_name") or setup.channel.label()),
        num_rounds=int(cfg["federation"]["num_rounds"]), engine=engine_description(cfg),
    )


def run_engine(cfg: dict[str, Any]) -> None:
    """Start the engine ``cfg["engine"]["name"]``; the ServerApp writes the run directory."""
    quiet_environment()
    name = cfg["engine"]["name"]
    verbose = bool(cfg.get("verbose", False))
    if name == "deployment":
        from fedcomp.engines.deployment.engine import deploy

        deploy(cfg)
    elif name == "flwr":
        from fedcomp.engines.flwr import run_flwr

        run_flwr(cfg)
    elif name == "inprocess":
        from fedcomp.engines.inprocess import simulate_inprocess

        simulate_inprocess(cfg, verbose=verbose)
    else:
        from fedcomp.engines.simulation import simulate  # imports Ray: only when used

        simulate(cfg, verbose=verbose)


def execute(
    cfg: dict[str, Any],
    echo: Callable[[str], None] = print,
    on_complete: OnComplete | None = None,
    position: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` as the module docstring says; return this run's summary (the saved one when skipped).

    ``position`` is ``(i, n)`` for the i-th run of a sweep of n (shown in the status line).
    """
    output_dir = Path(cfg["output_dir"])
    prefix = f"[{position[0]}/{position[1]}] " if position else ""
    refuse_if_locked(output_dir)
    if cfg.get("resume", True):
        reason = check_run(output_dir)
        if reason is None:
            saved = load_run(output_dir)
            reason = config_change(saved.config, cfg)
            if reason is None:
                echo(f"{prefix}skip: {output_dir} is already complete")
                return _completed(cfg, saved, on_complete)
        if any((output_dir / name).exists() for name in RUN_FILES):
            echo(f"{prefix}redo: {output_dir}: {reason}")
    plan = prepare(cfg)
    with lock_run_dir(output_dir):
        (output_dir / SUMMARY_FILE).unlink(missing_ok=True)  # incomplete until this run writes its own
        with interrupt.running(output_dir), run_logging(output_dir, bool(cfg.get("verbose"))) as log_file:
            echo(f"{prefix}{plan.describe()} -> {output_dir}")  # inside: an interrupt now names this run
            try:
                with run_progress(f"{prefix}{plan.task} {plan.compressor}", plan.num_rounds):
                    run_engine(cfg)
            except (DeploymentError, ConfigError):
                raise
            except Exception as err:
                log.exception("the run failed", extra={"console": False})  # run.log only
                if cfg.get("verbose"):
                    raise
                raise RunFailed(f"{one_line(str(err)) or type(err).__name__} (traceback in {log_file})") from err
        reason = check_run(output_dir)
        if reason is not None:
            raise RunFailed(f"the run ended without complete results in {output_dir}: {reason}")
        run = load_run(output_dir)
        print_closing(run.summary, run.ledger, output_dir, echo=echo)
    return _completed(cfg, run, on_complete)


#: Settings that do not change a run's results (where it writes, how it reports).
NOT_SETTINGS = ("output_dir", "resume", "verbose", "logger")


def config_change(saved: dict[str, Any], cfg: dict[str, Any], prefix: str = "") -> str | None:
    """The first setting whose value differs between a saved ``config.yaml`` and ``cfg``, or ``None``.

    Keys that only one of them has are ignored (a key added to fedcomp since the run
    keeps its old behaviour by default), and so are :data:`NOT_SETTINGS`.
    """
    for key, old in saved.items():
        if key not in cfg or (not prefix and key in NOT_SETTINGS):
            continue
        new = cfg[key]
        if isinstance(old, dict) and isinstance(new, dict):
            change = config_change(old, new, f"{prefix}{key}.")
            if change:
                return change
        elif old != new:
            return f"config.yaml has {prefix}{key}={old!r}, this run asks for {new!r}"
    return None


def _completed(cfg: dict[str, Any], run: RunFiles, on_complete: OnComplete | None) -> dict[str, Any]:
    if on_complete is not None:
        on_complete(cfg, run)
    return run.summary


def execute_cli(
    cfg: dict[str, Any], on_complete: OnComplete | None = None, position: tuple[int, int] | None = None
) -> None:
    """:func:`execute` for a command line: one line and an exit code for every way it can fail.

    Bad input and a directory in use exit 2, a failed run or deployment 1, an interrupt
    ``128 + signal`` (SIGINT and SIGTERM stop the run at once: :mod:`.interrupt`).
    """
    with interrupt.stop_on_signals():
        try:
            execute(cfg, on_complete=on_complete, position=position)
        except ConfigError as err:  # a directory in use too (RunDirInUse)
            _fail(f"error: {err}", 2)
        except Interrupted as err:  # the deployment stopped its processes itself
            signum = signal.SIGTERM if "SIGTERM" in str(err) else signal.SIGINT
            _fail(interrupt.message(signum, Path(cfg["output_dir"])), interrupt.exit_code(signum))
        except DeploymentError as err:
            _fail(f"error: deployment incomplete: {err}", 1)
        except RunFailed as err:
            _fail(f"error: run failed: {err}", 1)


def prepare_cli(configs: list[dict[str, Any]]) -> None:
    """:func:`prepare` every run of a command line (each run of a sweep) before Hydra starts.

    Settings a component checks itself (a density, a checkpoint, how many clients the
    data supports) fail here with one line and exit 2, before any directory exists.
    Runs that differ only in where they write are prepared once.
    """
    with interrupt.stop_on_signals():
        prepared: set[str] = set()
        for cfg in configs:
            key = repr({k: v for k, v in cfg.items() if k not in NOT_SETTINGS})
            if key in prepared:
                continue
            try:
                prepare(cfg)
            except ConfigError as err:
                _fail(f"error: {err}", 2)
            prepared.add(key)


def _fail(line: str, code: int) -> None:
    print(line, file=sys.stderr)
    sys.exit(code)
