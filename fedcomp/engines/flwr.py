"""Flower's own way on this machine: ``flwr run`` on a local SuperLink with the simulation runtime.

``python -m fedcomp.run engine=flwr ...`` runs one experiment the way ``flwr run .`` runs
a Flower App (the path Flower keeps; ``run_simulation``, behind ``engine=simulation``, is
deprecated), with fedcomp in charge of the processes:

1. a temporary ``FLWR_HOME`` whose ``config.toml`` names one SuperLink connection;
2. ``flower-superlink --insecure --simulation --isolation subprocess --host 127.0.0.1
   --port P``: the SuperLink ``flwr run`` itself starts for a ``:local:`` connection
   (``flwr/cli/local_superlink.py``), here on a free port with in-memory state, so runs
   never share it and none outlives its run;
3. ``flwr run <project> fedcomp --run-config <file>.toml --federation-config
   num-supernodes=N ...``: the resolved config travels as the run-config key
   ``fedcomp-config``, the federation's size is ``federation.num_clients``;
4. ``flwr ls`` polled until the run is finished: Flower's simulation process runs
   fedcomp's ServerApp and, on Ray, its ClientApps; the ServerApp writes the run
   directory (``config.yaml``, ``ledger.parquet``, ``metrics.parquet``, ``summary.json``);
5. every process stopped by PID (the SuperLink, the SuperExec and the simulation process
   it starts) and the Flower home removed, also on failure and on signals.

Process logs (the SuperLink's, the ServerApp's as ``serverapp-<run id>.log``) go to
``<output_dir>/flwr/``. Loopback only and insecure, as Flower's own local SuperLink:
nothing leaves the machine. A run that does not finish raises :class:`DeploymentError`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fedcomp.engines.deployment.engine import check_supernodes_and_timeouts
from fedcomp.engines.deployment.errors import DeploymentError
from fedcomp.engines.deployment.federation import setting
from fedcomp.engines.deployment.flwr_cli import FlwrCli, executable
from fedcomp.engines.deployment.processes import Processes, flower_env, free_ports, ignore_signals, stop_on_signals

#: The engine's log folder in the run directory.
LOG_DIR = "flwr"


def check_config(cfg: dict[str, Any]) -> None:
    """The engine's own keys; ConfigError naming the key and the allowed values."""
    check_supernodes_and_timeouts(cfg, ("startup_timeout", "run_timeout", "poll_interval", "stop_timeout"))


def federation_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``--federation-config`` of the run: Flower's simulation settings from ``cfg``.

    The number of simulated SuperNodes is ``federation.num_clients``; Ray gets
    ``engine.num_cpus`` (null: all) and each ClientApp ``engine.client_resources``.
    """
    engine = cfg["engine"]
    resources = engine.get("client_resources") or {}
    options: dict[str, Any] = {
        "num-supernodes": int(cfg["federation"]["num_clients"]),
        "client-resources-num-cpus": int(setting(resources, "num_cpus", 1)),
        "client-resources-num-gpus": float(setting(resources, "num_gpus", 0.0)),
        "init-args-logging-level": "error",
        "init-args-log-to-driver": False,
        "verbose": bool(cfg.get("verbose", False)),
    }
    if engine.get("num_cpus"):
        options["init-args-num-cpus"] = int(engine["num_cpus"])
    return options


def run_flwr(cfg: dict[str, Any], echo: Any = print) -> dict[str, Any]:
    """Run ``cfg`` with ``flwr run`` on a local simulation SuperLink; what happened.

    Returns ``flwr_run_id``, ``run_status`` (``finished:completed``), ``superlink_pid``,
    ``process_tag`` (the tag every process of the run carried) and ``leftover_pids``
    (empty). Raises :class:`DeploymentError` when the run did not finish or a process
    could not be stopped.
    """
    check_config(cfg)
    engine = cfg["engine"]
    output_dir = Path(cfg["output_dir"]).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    host = str(setting(engine, "host", "127.0.0.1"))
    home = Path(tempfile.mkdtemp(prefix="fedcomp-flwr-home-"))
    procs = Processes(flower_env(home), output_dir / LOG_DIR, float(setting(engine, "stop_timeout", 10)))
    record: dict[str, Any] = {"flwr_run_id": None, "process_tag": procs.tag}
    flwr: FlwrCli | None = None
    try:
        with stop_on_signals():
            port = free_ports(host, 1)[0]
            link = procs.start("superlink", [
                executable("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
                "--host", host, "--port", str(port),
            ], cwd=home)  # fmt: skip
            record["superlink_pid"] = link.pid
            echo(f"flwr: local SuperLink (simulation runtime) on {host}:{port} (pid {link.pid}), "
                 f"logs in {procs.log_dir}")  # fmt: skip
            flwr = FlwrCli(home, f"{host}:{port}", procs.env)
            flwr.wait_ready(link, float(setting(engine, "startup_timeout", 60)))
            record["flwr_run_id"] = run_id = flwr.submit({**cfg, "output_dir": str(output_dir)}, federation_config(cfg))
            echo(f"flwr: run id {run_id}; waiting for it to finish (polling flwr ls)")
            timeout = float(setting(engine, "run_timeout", 1800))
            interval = float(setting(engine, "poll_interval", 2.0))
            record["run_status"] = flwr.wait_run(run_id, procs, timeout, interval, echo).get("status")
    except BaseException:
        if flwr is not None and record["flwr_run_id"] is not None:
            flwr.stop_run(record["flwr_run_id"], record)
        raise
    finally:
        with ignore_signals():
            record["leftover_pids"] = procs.stop_all()
            shutil.rmtree(home, ignore_errors=True)
    if record["leftover_pids"]:
        raise DeploymentError(f"processes still alive after stopping the flwr run: {record['leftover_pids']}")
    return record
