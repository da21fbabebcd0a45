"""Partition a task's client pool across clients with Flower Datasets partitioners.

The ``partition`` config group (``conf/partition/*.yaml``) names a Flower Datasets
partitioner by ``_target_`` plus its settings; what the run decides is added in code:

- ``num_partitions`` = ``federation.num_clients``,
- ``partition_by`` = the task's ``label_column`` (``label`` for the image tasks,
  ``module`` for pythia14m) unless the config sets it,
- ``seed`` = the run's ``seed``.

``load_partitions`` first shuffles the pool with ``seed`` (``IidPartitioner`` shards
contiguously and has no seed of its own), assigns it to the partitioner and loads every
partition. Everything is validated before a simulation starts: bad settings raise
``ValueError`` naming the config key (``partition.alpha``, ``federation.num_clients``...)
and, for too many clients, how many the data can support.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from datasets import Dataset

__all__ = ["ALLOWED_PARTITIONERS", "build_partitioner", "load_partitions", "partition_stats"]

#: short name -> Flower Datasets class name; ``_target_`` may use either form
ALLOWED_PARTITIONERS: dict[str, str] = {
    "dirichlet": "DirichletPartitioner",
    "iid": "IidPartitioner",
    "pathological": "PathologicalPartitioner",
}
_LABEL_BASED = {"DirichletPartitioner", "PathologicalPartitioner"}
_CACHE: dict[tuple, list[Dataset]] = {}


def _as_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"partition config must be a mapping, got {type(cfg).__name__}")


def _allowed_listing() -> str:
    return ", ".join(
        f"{short} (flwr_datasets.partitioner.{cls})" for short, cls in ALLOWED_PARTITIONERS.items()
    )


def _resolve_class(target: Any) -> type:
    import flwr_datasets.partitioner as fp

    if not isinstance(target, str) or not target:
        raise ValueError(f"partition._target_ is missing; allowed: {_allowed_listing()}")
    name = target.rsplit(".", 1)[-1]
    name = ALLOWED_PARTITIONERS.get(name.lower(), name)
    module = target.rsplit(".", 1)[0] if "." in target else "flwr_datasets.partitioner"
    if name not in ALLOWED_PARTITIONERS.values() or not module.startswith("flwr_datasets"):
        raise ValueError(f"partition._target_={target!r} is not supported; allowed: {_allowed_listing()}")
    return getattr(fp, name)


def _check_num_clients(num_partitions: Any) -> int:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int) or num_partitions < 1:
        raise ValueError(f"federation.num_clients={num_partitions!r} must be an integer >= 1")
    return num_partitions


def build_partitioner(
    cfg_partition: Any, num_partitions: int, label_column: str | None, seed: int
):
    """Instantiate the Flower Datasets partitioner described by ``cfg_partition``.

    Parameters
    ----------
    cfg_partition
        The ``partition`` config (DictConfig or dict) with ``_target_`` and settings.
    num_partitions
        ``federation.num_clients``.
    label_column
        The task's label column, used as ``partition_by`` unless the config sets one.
    seed
        The run's seed, passed to partitioners that take one.

    Raises
    ------
    ValueError
        Unknown partitioner (the message lists the allowed ones), ``partition.alpha`` <= 0,
        ``federation.num_clients`` < 1, a label-based partitioner for a task without labels,
        or settings the partitioner does not accept.
    """
    cfg = _as_dict(cfg_partition)
    cls = _resolve_class(cfg.pop("_target_", None))
    num_partitions = _check_num_clients(num_partitions)
    cfg.pop("_partial_", None)

    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"num_partitions": num_partitions}
    if "partition_by" in params:
        partition_by = cfg.pop("partition_by", None) or label_column
        if partition_by is None:
            raise ValueError(
                f"partition={cls.__name__} splits by a label column, but the task has none "
                "(label_column=None); use partition=iid or set partition.partition_by"
            )
        kwargs["partition_by"] = partition_by
    elif cfg.get("partition_by") is None:
        cfg.pop("partition_by", None)
    if "seed" in params:  # the run's seed unless the config pins one
        cfg_seed = cfg.pop("seed", None)
        kwargs["seed"] = int(seed if cfg_seed is None else cfg_seed)

    if cls.__name__ == "DirichletPartitioner":
        alpha = cfg.get("alpha")
        values = alpha if isinstance(alpha, (list, tuple)) else [alpha]
        if alpha is None or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and a > 0 for a in values):
            raise ValueError(f"partition.alpha={alpha!r} must be > 0 (smaller = more skewed)")
        if isinstance(alpha, (list, tuple)):
            if len(alpha) != num_partitions:
                raise ValueError(
                    f"partition.alpha has {len(alpha)} values; a list needs one per client "
                    f"(federation.num_clients={num_partitions})"
                )
            cfg["alpha"] = [float(a) for a in alpha]
        else:
            cfg["alpha"] = float(alpha)
        if int(cfg.get("min_partition_size", 10)) < 0:
            raise ValueError("partition.min_partition_size must be >= 0")
    if cls.__name__ == "PathologicalPartitioner":
        k = cfg.get("num_classes_per_partition")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"partition.num_classes_per_partition={k!r} must be an integer >= 1")

    unknown = sorted(set(cfg) - set(params))
    if unknown:
        accepted = sorted(p for p in params if p not in ("self", "num_partitions", "partition_by", "seed"))
        raise ValueError(
            f"partition keys {unknown} are not settings of {cls.__name__}; accepted: {accepted}"
        )
    return cls(**kwargs, **cfg)


def _task_key(task: Any) -> tuple:
    state = tuple(sorted((k, repr(v)) for k, v in vars(task).items()))
    return (type(task).__module__, type(task).__qualname__, state)


def _partition(pool: Dataset, cfg: dict, num_clients: int, label_column: str | None, seed: int):
    """Every partition of ``pool``; the partitioner's retry warnings are silenced (a
    Dirichlet split that fails warns ten times, listing every client's alpha: the
    error raised here says what failed instead)."""
    import warnings

    partitioner = build_partitioner(cfg, num_clients, label_column, seed)
    partitioner.dataset = pool
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [partitioner.load_partition(i) for i in range(num_clients)]


def _feasible(pool: Dataset, cfg: dict, num_clients: int, label_column: str | None, seed: int) -> bool:
    try:
        parts = _partition(pool, cfg, num_clients, label_column, seed)
    except ValueError:
        return False
    return all(len(p) > 0 for p in parts)


_MAX_SUPPORTED: dict[tuple, int] = {}


def _max_supported(pool: Dataset, cfg: dict, label_column: str | None, seed: int, key: tuple) -> int:
    """Largest num_clients that partitions ``pool`` with no empty client (0 when even one
    client fails): a binary search over actual partitioning attempts, up to
    ``len(pool) // partition.min_partition_size``.

    Computed once per task, partition settings and seed (``key``) and cached, so every
    rejected ``federation.num_clients`` states the same limit.
    """
    if key not in _MAX_SUPPORTED:
        lo, hi = 0, len(pool) // max(1, int(cfg.get("min_partition_size") or 1))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _feasible(pool, cfg, mid, label_column, seed):
                lo = mid
            else:
                hi = mid - 1
        _MAX_SUPPORTED[key] = lo
    return _MAX_SUPPORTED[key]


def load_partitions(task: Any, partition_cfg: Any, num_clients: int, seed: int) -> list[Dataset]:
    """Partition ``task.client_dataset()`` into ``num_clients`` datasets (cached per process).

    The same task settings, partition config, ``num_clients`` and ``seed`` give the same
    partitions, in this and any other process. Raises ``ValueError`` naming the config
    key when the settings cannot give every client at least one example.
    """
    num_clients = _check_num_clients(num_clients)
    cfg = _as_dict(partition_cfg)
    key = (_task_key(task), json.dumps(cfg, sort_keys=True, default=str), num_clients, int(seed))
    if key in _CACHE:
        return list(_CACHE[key])

    label_column = getattr(task, "label_column", None)
    build_partitioner(cfg, num_clients, label_column, seed)  # validate settings first
    pool = task.client_dataset()
    n = len(pool)
    shuffled = pool.shuffle(seed=int(seed))
    name = str(cfg.get("_target_", "")).rsplit(".", 1)[-1]
    limit_key = key[:2] + key[3:]  # the limit does not depend on the num_clients asked for

    def limit() -> str:
        supported = _max_supported(shuffled, cfg, label_column, seed, limit_key)
        hint = ""
        if name == "DirichletPartitioner":
            hint = (
                f" (Dirichlet alpha={cfg.get('alpha')}, min_partition_size={cfg.get('min_partition_size', 10)}:"
                " raise partition.alpha or lower partition.min_partition_size for more)"
            )
        return f"with these settings task {task.name}'s {n} examples support at most {supported} clients{hint}"

    if num_clients > n:
        raise ValueError(f"federation.num_clients={num_clients} exceeds the client pool; {limit()}")
    try:
        parts = _partition(shuffled, cfg, num_clients, label_column, seed)
    except ValueError as exc:
        raise ValueError(
            f"federation.num_clients={num_clients}: {name} could not split the data; {limit()}"
        ) from exc
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty:
        raise ValueError(
            f"federation.num_clients={num_clients}: {name} left {len(empty)} client(s) with no examples "
            f"(partition ids {empty[:10]}); {limit()}"
        )
    _CACHE[key] = parts
    return list(parts)


def partition_stats(partitions: list[Dataset], label_column: str | None) -> list[dict[str, Any]]:
    """One dict per partition: ``partition_id``, ``num_examples`` and ``label_counts``
    (label -> count, sorted by label; empty when ``label_column`` is ``None``)."""
    stats = []
    for pid, part in enumerate(partitions):
        counts: dict[Any, int] = {}
        if label_column is not None and len(part):
            raw = Counter(part[label_column])
            counts = {
                (k.item() if hasattr(k, "item") else k): int(v)
                for k, v in sorted(raw.items(), key=lambda kv: kv[0])
            }
        stats.append({"partition_id": pid, "num_examples": len(part), "label_counts": counts})
    return stats
