"""The one module that starts Flower engines.

``simulate`` runs fedcomp's ServerApp and ClientApp on Flower's Simulation Engine
(Ray) in this process. Every import of ``flwr.simulation`` lives here, so moving to
``flwr run`` (see :mod:`fedcomp.deploy`) is a change of this module only.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from typing import Any

QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}

NOISY_LOGGERS = ("alembic", "ray", "filelock", "datasets", "urllib3", "httpx")


def quiet_environment() -> None:
    """Offline-safe, quiet settings for Flower and Ray (kept if the user set them)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "fedcomp-ray"))
    os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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
    from flwr.simulation import run_simulation

    from fedcomp.fl.client_app import build_client_app
    from fedcomp.fl.server_app import build_server_app

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
