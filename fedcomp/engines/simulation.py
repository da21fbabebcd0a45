"""Flower's Simulation Engine (Ray): fedcomp's ServerApp and ClientApp in this process.

``simulate`` calls ``flwr.simulation.run_simulation`` with the apps bound to the run's
config. ``engine.ray_address`` attaches to a running Ray cluster instead of starting one.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.simulation import run_simulation

from fedcomp.core.env import quiet_environment
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


def simulate(cfg: dict[str, Any], verbose: bool = False) -> None:
    """Run one fedcomp experiment on Flower's Simulation Engine.

    The ServerApp writes the run directory (``cfg["output_dir"]``) itself.
    """
    quiet_environment()
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    try:
        run_simulation(
            server_app=build_server_app(cfg),
            client_app=build_client_app(cfg),
            num_supernodes=int(cfg["federation"]["num_clients"]),
            backend_config=backend_config(cfg["engine"]),
            verbose_logging=verbose,
        )
    finally:
        flwr_logger.setLevel(previous)
