"""Flower's Simulation Engine (Ray): fedcomp's ServerApp and ClientApp in this process.

``simulate`` calls ``flwr.simulation.run_simulation`` with the apps bound to the run's
config. ``engine.ray_address`` attaches to a running Ray cluster instead of starting one.

Ray is started here (:func:`start_ray`, with the arguments Flower's ``RayBackend`` would
use; Flower then finds it running) because ``ray.init`` replaces the process's SIGTERM
handler with one that exits while Flower's ServerApp thread keeps the process alive:
fedcomp's handler (:mod:`fedcomp.engines.interrupt`) is put back once Ray is up.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import ray
from flwr.simulation import run_simulation

from fedcomp.core.env import quiet_environment
from fedcomp.engines.interrupt import keep_signal_handlers
from fedcomp.flower.client_app import build_client_app
from fedcomp.flower.server_app import build_server_app


def backend_config(engine: dict[str, Any]) -> dict[str, Any]:
    """Flower's Ray backend config from ``cfg.engine``."""
    init_args: dict[str, Any] = {"logging_level": "error", "log_to_driver": False}
    if engine.get("ray_address"):
        init_args["address"] = engine["ray_address"]
    elif engine.get("num_cpus"):
        init_args["num_cpus"] = int(engine["num_cpus"])
    resources = engine.get("client_resources") or {}
    return {
        "init_args": init_args,
        "client_resources": {
            "num_cpus": float(resources.get("num_cpus", 1)),
            "num_gpus": float(resources.get("num_gpus", 0.0)),
        },
    }


def start_ray(init_args: dict[str, Any]) -> None:
    """``ray.init`` as Flower's ``RayBackend.init_ray`` calls it, keeping fedcomp's signal handlers.

    Ray's workers get this process's ``sys.path`` (Flower does the same) so they import
    fedcomp and the task modules exactly as the driver does.
    """
    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    with keep_signal_handlers():
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, include_dashboard=False, **init_args)


def simulate(cfg: dict[str, Any], verbose: bool = False) -> None:
    """Run one fedcomp experiment on Flower's Simulation Engine.

    The ServerApp writes the run directory (``cfg["output_dir"]``) itself.
    """
    quiet_environment()
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    backend = backend_config(cfg["engine"])
    try:
        start_ray(backend["init_args"])
        run_simulation(
            server_app=build_server_app(cfg),
            client_app=build_client_app(cfg),
            num_supernodes=int(cfg["federation"]["num_clients"]),
            backend_config=backend,
            verbose_logging=verbose,
        )
    finally:
        flwr_logger.setLevel(previous)
