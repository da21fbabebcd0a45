"""Environment defaults for Flower, Ray and Hugging Face: quiet, offline, no installs.

The one place these are set; a value the user exported wins (``setdefault``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

#: Set for every engine: no telemetry, no downloads, no runtime dependency install.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # without it `flwr run` installs the app's dependencies with uv (a CUDA torch, GBs)
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    # Ray's C++ failure handler would take SIGTERM from fedcomp's own handler and abort
    # (exit 134, a stack dump, the actors left running): fedcomp.engines.interrupt
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
}

NOISY_LOGGERS = ("alembic", "ray", "filelock", "datasets", "urllib3", "httpx")


def ray_tmpdir() -> str:
    """Ray's temporary directory (short path: Ray's socket names have a length limit)."""
    return os.environ.get("RAY_TMPDIR") or os.path.join(tempfile.gettempdir(), "fedcomp-ray")


def quiet_environment() -> None:
    """Apply :data:`QUIET_ENV` (keeping what the user set) and quiet noisy loggers."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_TMPDIR", ray_tmpdir())
    os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process (SuperLink, SuperNode, ``flwr``)."""
    return {**os.environ, **QUIET_ENV, "PYTHONUNBUFFERED": "1", **extra}
