"""The server optimizer contract: ``step(global_state, update) -> new_global_state``.

``update`` is the aggregated client delta ``Δ`` (the weighted mean of ``trained −
received``, or what a compressor's server-side aggregation returns): the direction the
clients moved the model. An optimizer treats ``-Δ`` as the pseudo-gradient (Reddi et
al. 2021, "Adaptive Federated Optimization") and keeps its own moments between rounds.
Tensors of ``global_state`` that ``update`` lacks (frozen ones) are returned unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from fedcomp.core.errors import ConfigError

Tensors = dict[str, np.ndarray]


class ServerOptimizer(ABC):
    """One server update rule with its state (moments), numpy only."""

    #: The ``server.name`` this rule is configured by.
    name = ""

    def step(self, global_state: Tensors, update: Tensors) -> Tensors:
        """The new global model: ``global_state`` moved by the rule's step for ``update``.

        Raises
        ------
        ValueError
            If ``update`` names a tensor the model lacks or has another shape.
        """
        out = dict(global_state)
        for name, delta in update.items():
            x = global_state.get(name)
            if x is None or x.shape != delta.shape:
                raise ValueError(
                    f"server optimizer: update tensor {name!r} does not match the model"
                )
            out[name] = np.add(
                x, self.direction(name, np.asarray(delta, dtype=np.float32)), dtype=np.float32
            )
        return out

    @abstractmethod
    def direction(self, name: str, delta: np.ndarray) -> np.ndarray:
        """The float32 step added to tensor ``name`` for its update ``delta``."""

    def params(self) -> dict[str, Any]:
        """The settings (for ``summary.json``)."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


def positive(key: str, value: Any) -> float:
    """``value`` as a finite float > 0, else :class:`ConfigError` naming ``server.<key>``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < float("inf")
    ):
        raise ConfigError(f"server.{key}: must be a number > 0, got {value!r}")
    return float(value)


def fraction(key: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1)``, else :class:`ConfigError` naming ``server.<key>``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"server.{key}: must be a number in [0, 1), got {value!r}")
    return float(value)
