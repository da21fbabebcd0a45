"""Build the server optimizer from the ``server`` config group (``conf/server/*.yaml``)."""

from __future__ import annotations

import inspect
from typing import Any

from fedcomp.core.errors import ConfigError
from fedcomp.optimizers.base import ServerOptimizer
from fedcomp.optimizers.rules import FedAdam, FedAvg, FedAvgM, FedYogi

#: ``server.name`` → the rule's class.
OPTIMIZERS: dict[str, type[ServerOptimizer]] = {
    cls.name: cls for cls in (FedAvg, FedAvgM, FedAdam, FedYogi)
}


def build_optimizer(cfg_server: dict[str, Any]) -> ServerOptimizer:
    """The optimizer ``cfg_server["name"]`` with the other keys as its settings.

    Raises
    ------
    ConfigError
        (a ``ValueError``) naming ``server.<key>``: an unknown name, a key the rule
        does not take, or a value out of range.
    """
    if not isinstance(cfg_server, dict):
        raise ConfigError(
            f"server: expected a mapping with a name, got {type(cfg_server).__name__}"
        )
    settings = dict(cfg_server)
    name = settings.pop("name", None)
    cls = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"server.name: must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    allowed = [p for p in inspect.signature(cls).parameters]
    for key in settings:
        if key not in allowed:
            raise ConfigError(f"server.{key}: not a setting of {name} (allowed: {allowed})")
    return cls(**settings)
