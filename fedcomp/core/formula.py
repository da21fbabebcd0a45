"""The bandwidth formula of federated learning (the CLI is ``python -m fedcomp.formula``).

``total = (bytes_down + bytes_up) × num_clients × fraction_fit × num_rounds``

``bytes_up`` defaults to ``bytes_down`` ("model size × 2"). Evaluation traffic
(the model sent to ``num_clients × fraction_evaluate`` clients) is its own line.
Flower samples an integer cohort each round, ``max(min_clients, int(n × fraction))``,
so the figure a simulation moves can differ from the continuous formula; both are
reported side by side.

The lesson this project grows from calls Pythia-14M "53MB": that is
``floor(56,270,848 / 2**20) = 53`` MiB, and ``53 × 2 × 2 clients × 1 round = 212``.
``--lesson-rounding`` reproduces that convention next to the exact figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fedcomp.core.units import MIB, human


def cohort_size(num_clients: int, fraction: float, min_clients: int = 1) -> int:
    """Clients Flower samples per round: ``max(min_clients, int(num_clients × fraction))``.

    Returns 0 when ``fraction`` is 0 (that phase is disabled, as in Flower's FedAvg).
    """
    if fraction == 0:
        return 0
    return min(num_clients, max(min_clients, int(num_clients * fraction)))


def model_bytes(tensors: Iterable[object]) -> int:
    """Sum of ``numel × element_size`` over tensors (torch tensors or numpy arrays)."""
    total = 0
    for tensor in tensors:
        if hasattr(tensor, "element_size"):
            total += int(tensor.numel()) * int(tensor.element_size())
        else:
            total += int(tensor.nbytes)
    return total


@dataclass(frozen=True)
class Estimate:
    """Bandwidth of one federated run by the formula, and by the integer cohort.

    All byte figures are exact integers or floats in bytes.
    """

    bytes_down: int
    bytes_up: int
    num_clients: int
    fraction_fit: float
    num_rounds: int
    fraction_evaluate: float = 0.0
    min_fit_clients: int = 1
    min_evaluate_clients: int = 1

    def __post_init__(self) -> None:
        validate(
            bytes_down=self.bytes_down,
            bytes_up=self.bytes_up,
            num_clients=self.num_clients,
            fraction_fit=self.fraction_fit,
            fraction_evaluate=self.fraction_evaluate,
            num_rounds=self.num_rounds,
            min_fit_clients=self.min_fit_clients,
        )

    @classmethod
    def for_run(cls, federation: Mapping[str, Any], bytes_down: int, bytes_up: int | None = None) -> Estimate:
        """The formula for a run's ``federation`` config and its dense model size."""
        return cls(
            bytes_down=int(bytes_down),
            bytes_up=int(bytes_down if bytes_up is None else bytes_up),
            num_clients=int(federation["num_clients"]),
            fraction_fit=float(federation["fraction_fit"]),
            num_rounds=int(federation["num_rounds"]),
            fraction_evaluate=float(federation.get("fraction_evaluate", 0.0) or 0.0),
            min_fit_clients=int(federation.get("min_fit_clients", 1) or 1),
        )

    @property
    def train_per_round(self) -> float:
        """Continuous formula, one round of training: (down + up) × n × fraction."""
        return (self.bytes_down + self.bytes_up) * self.num_clients * self.fraction_fit

    @property
    def train_total(self) -> float:
        """Continuous formula over all rounds."""
        return self.train_per_round * self.num_rounds

    @property
    def evaluate_per_round(self) -> float:
        """Model sent down for federated evaluation: down × n × fraction_evaluate."""
        return self.bytes_down * self.num_clients * self.fraction_evaluate

    @property
    def evaluate_total(self) -> float:
        return self.evaluate_per_round * self.num_rounds

    @property
    def total(self) -> float:
        """Training plus evaluation traffic, continuous formula."""
        return self.train_total + self.evaluate_total

    @property
    def fit_cohort(self) -> int:
        """Integer training cohort Flower samples each round."""
        return cohort_size(self.num_clients, self.fraction_fit, self.min_fit_clients)

    @property
    def evaluate_cohort(self) -> int:
        """Integer evaluation cohort Flower samples each round."""
        return cohort_size(self.num_clients, self.fraction_evaluate, self.min_evaluate_clients)

    @property
    def cohort_down_total(self) -> int:
        """Bytes sent down over the run with the integer cohort (train + evaluate)."""
        return self.bytes_down * (self.fit_cohort + self.evaluate_cohort) * self.num_rounds

    @property
    def cohort_up_total(self) -> int:
        """Bytes sent up over the run with the integer cohort (training updates only)."""
        return self.bytes_up * self.fit_cohort * self.num_rounds

    @property
    def cohort_total(self) -> int:
        """What a simulation with Flower's integer cohort moves (model bytes only)."""
        return self.cohort_down_total + self.cohort_up_total


def validate(
    *,
    bytes_down: int,
    bytes_up: int,
    num_clients: int,
    fraction_fit: float,
    fraction_evaluate: float,
    num_rounds: int,
    min_fit_clients: int = 1,
) -> None:
    """Raise ``ValueError`` naming the key and the allowed values for bad input."""
    checks = [
        (bytes_down >= 0, "bytes_down", "an integer >= 0", bytes_down),
        (bytes_up >= 0, "bytes_up", "an integer >= 0", bytes_up),
        (num_clients >= 1, "federation.num_clients", "an integer >= 1", num_clients),
        (0 < fraction_fit <= 1, "federation.fraction_fit", "a number in (0, 1]", fraction_fit),
        (
            0 <= fraction_evaluate <= 1,
            "federation.fraction_evaluate",
            "a number in [0, 1]",
            fraction_evaluate,
        ),
        (num_rounds >= 1, "federation.num_rounds", "an integer >= 1", num_rounds),
        (
            1 <= min_fit_clients <= max(num_clients, 1),
            "federation.min_fit_clients",
            f"an integer in [1, federation.num_clients={num_clients}]",
            min_fit_clients,
        ),
    ]
    for ok, key, allowed, value in checks:
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{key}: must be {allowed}, got {value!r}")


def lesson_total_mb(bytes_down: int, bytes_up: int, estimate: Estimate) -> int:
    """The lesson's convention: model sizes floored to whole MiB, result called "MB"."""
    down = bytes_down // MIB
    up = bytes_up // MIB
    return int((down + up) * estimate.num_clients * estimate.fraction_fit * estimate.num_rounds)


def render(estimate: Estimate, lesson_rounding: bool, label: str = "") -> str:
    """The report printed by the CLI."""
    e = estimate
    lines = [
        "fedcomp bandwidth formula",
        "  total = (bytes_down + bytes_up) x num_clients x fraction_fit x num_rounds",
        f"  model sent down : {human(e.bytes_down)}" + (f"  ({label})" if label else ""),
        f"  update sent up  : {human(e.bytes_up)}",
        f"  = ({e.bytes_down:,} + {e.bytes_up:,}) x {e.num_clients} x {e.fraction_fit:g}"
        f" x {e.num_rounds}",
        f"  per round (train) : {human(e.train_per_round)}",
    ]
    if e.fraction_evaluate > 0:
        lines.append(
            f"  per round (evaluate, model down x {e.num_clients} x {e.fraction_evaluate:g})"
            f" : {human(e.evaluate_per_round)}"
        )
    lines += [
        f"  total (train)   : {human(e.train_total)}",
    ]
    if e.fraction_evaluate > 0:
        lines.append(f"  total (evaluate): {human(e.evaluate_total)}")
        lines.append(f"  total           : {human(e.total)}")
    lines.append(
        f"  integer cohort (what Flower samples): {e.fit_cohort} train"
        + (f" + {e.evaluate_cohort} evaluate" if e.fraction_evaluate > 0 else "")
        + f" clients/round -> {human(e.cohort_total)}"
    )
    if lesson_rounding:
        down_mib, up_mib = e.bytes_down // MIB, e.bytes_up // MIB
        lines.append(
            f"  lesson rounding : ({down_mib} + {up_mib}) MiB x {e.num_clients} x "
            f"{e.fraction_fit:g} x {e.num_rounds} = "
            f"{lesson_total_mb(e.bytes_down, e.bytes_up, e)} MB (model size floored to MiB)"
        )
    return "\n".join(lines)
