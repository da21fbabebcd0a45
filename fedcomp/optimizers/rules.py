"""The four server update rules: FedAvg, FedAvgM, FedAdam and FedYogi.

With ``Δ`` the aggregated client delta of a tensor (all arithmetic per entry, float32):

- FedAvg (McMahan et al. 2017): ``x ← x + η Δ``. ``η = 1`` is plain federated
  averaging, bit for bit.
- FedAvgM (Hsu et al. 2019): ``v ← β v + Δ``, ``x ← x + η v`` (``v`` starts at 0).
- FedAdam (Reddi et al. 2021, Algorithm 2): ``m ← β1 m + (1 − β1) Δ``,
  ``v ← β2 v + (1 − β2) Δ²``, ``x ← x + η m / (√v + τ)``.
- FedYogi (same paper): as FedAdam but ``v ← v − (1 − β2) Δ² sign(v − Δ²)``.

The adaptive rules start from ``m = 0`` and ``v = τ²`` (the paper's ``v_{-1} >= τ²``)
and, as in the paper, do not bias-correct (Flower's ``FedAdam`` scales ``η`` by
Adam's bias correction; this module follows the paper).
"""

from __future__ import annotations

import numpy as np

from fedcomp.optimizers.base import ServerOptimizer, fraction, positive


class FedAvg(ServerOptimizer):
    """``x ← x + lr · Δ``.

    Parameters
    ----------
    lr
        Server learning rate ``η`` (> 0); 1 is plain FedAvg.
    """

    name = "fedavg"

    def __init__(self, lr: float = 1.0) -> None:
        self.lr = positive("lr", lr)

    def direction(self, name: str, delta: np.ndarray) -> np.ndarray:
        return delta if self.lr == 1.0 else np.float32(self.lr) * delta


class FedAvgM(ServerOptimizer):
    """Server momentum: ``v ← momentum · v + Δ``, ``x ← x + lr · v``.

    Parameters
    ----------
    lr
        Server learning rate (> 0).
    momentum
        ``β`` in [0, 1).
    """

    name = "fedavgm"

    def __init__(self, lr: float = 1.0, momentum: float = 0.9) -> None:
        self.lr = positive("lr", lr)
        self.momentum = fraction("momentum", momentum)
        self._velocity: dict[str, np.ndarray] = {}

    def direction(self, name: str, delta: np.ndarray) -> np.ndarray:
        previous = self._velocity.get(name)
        velocity = (
            delta.copy() if previous is None else np.float32(self.momentum) * previous + delta
        )
        self._velocity[name] = velocity
        return np.float32(self.lr) * velocity


class FedAdam(ServerOptimizer):
    """Adaptive server optimizer FedAdam (see the module docstring).

    Parameters
    ----------
    lr
        ``η`` (> 0).
    beta1, beta2
        Moment decay rates in [0, 1).
    tau
        ``τ`` (> 0): adaptivity; also the start of ``√v``.
    """

    name = "fedadam"

    def __init__(
        self, lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
    ) -> None:
        self.lr = positive("lr", lr)
        self.beta1 = fraction("beta1", beta1)
        self.beta2 = fraction("beta2", beta2)
        self.tau = positive("tau", tau)
        self._m: dict[str, np.ndarray] = {}
        self._v: dict[str, np.ndarray] = {}

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Adam's ``v`` update."""
        return np.float32(self.beta2) * v + np.float32(1 - self.beta2) * square

    def direction(self, name: str, delta: np.ndarray) -> np.ndarray:
        m = self._m.get(name, np.zeros_like(delta))
        v = self._v.get(name, np.full_like(delta, self.tau**2))
        m = np.float32(self.beta1) * m + np.float32(1 - self.beta1) * delta
        v = self.second_moment(v, np.square(delta))
        self._m[name], self._v[name] = m, v
        return np.float32(self.lr) * m / (np.sqrt(v) + np.float32(self.tau))


class FedYogi(FedAdam):
    """Adaptive server optimizer FedYogi: FedAdam with Yogi's additive ``v`` update."""

    name = "fedyogi"

    def second_moment(self, v: np.ndarray, square: np.ndarray) -> np.ndarray:
        """Yogi's ``v`` update: ``v − (1 − β2) Δ² sign(v − Δ²)``."""
        return v - np.float32(1 - self.beta2) * square * np.sign(v - square)
