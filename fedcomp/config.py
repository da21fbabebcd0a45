"""Compose and validate the Hydra config: bad input fails here, before any engine starts.

Only Hydra and :mod:`fedcomp.core`: the Flower apps compose configs with it too (``flwr run``).
Building the components (their own checks) is :func:`fedcomp.engines.launch.prepare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fedcomp.core.errors import ConfigError
from fedcomp.core.formula import cohort_size
from fedcomp.core.formula import validate as validate_formula
from fedcomp.core.paths import CONF_DIR

CLIENT_UPDATES = ("delta", "weights")
ENGINES = ("simulation", "deployment")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides outside of ``@hydra.main`` (tests, tools).

    Keys that ``@hydra.main`` fills from its runtime (group choices, output directory)
    are filled here from the composition; pass ``output_dir=...`` to set where a run
    writes.
    """
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=overrides or [], return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    OmegaConf.set_struct(cfg, False)
    cfg.compressor_name = choices.compressor
    cfg.task_name = choices.task
    if OmegaConf.is_missing(cfg, "output_dir") or "hydra:" in str(cfg._get_node("output_dir")._value()):
        cfg.output_dir = str(Path("results") / "runs" / f"composed_{choices.task}_{choices.compressor}")
    del cfg["hydra"]
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_task(name: str) -> Any:
    """Instantiate ``conf/task/<name>.yaml``."""
    options = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"task: unknown task {name!r}; allowed: {', '.join(options)}")
    cfg = compose_config([f"task={name}"])
    return instantiate(cfg.task, _convert_="all")


def _need(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: must be {allowed}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(cfg: dict[str, Any]) -> None:
    """Check the keys fedcomp reads; raise :class:`ConfigError` naming key and allowed values."""
    fed = cfg["federation"]
    for key in ("num_clients", "num_rounds", "min_fit_clients"):
        _need(_is_int(fed.get(key)), f"federation.{key}", "an integer", fed.get(key))
    for key in ("fraction_fit", "fraction_evaluate"):
        _need(isinstance(fed.get(key), (int, float)) and not isinstance(fed.get(key), bool),
              f"federation.{key}", "a number", fed.get(key))
    try:
        validate_formula(
            bytes_down=0,
            bytes_up=0,
            num_clients=fed["num_clients"],
            fraction_fit=float(fed["fraction_fit"]),
            fraction_evaluate=float(fed["fraction_evaluate"]),
            num_rounds=fed["num_rounds"],
            min_fit_clients=fed["min_fit_clients"],
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err
    cohort = cohort_size(fed["num_clients"], float(fed["fraction_fit"]), fed["min_fit_clients"])
    _need(cohort <= fed["num_clients"], "federation.min_fit_clients",
          f"<= federation.num_clients={fed['num_clients']}", fed["min_fit_clients"])
    client = cfg["client"]
    _need(_is_int(client.get("local_epochs")) and client["local_epochs"] >= 1,
          "client.local_epochs", "an integer >= 1", client.get("local_epochs"))
    steps = client.get("local_steps")
    _need(steps is None or (_is_int(steps) and steps >= 1), "client.local_steps",
          "null or an integer >= 1", steps)
    _need(client.get("update", "delta") in CLIENT_UPDATES, "client.update",
          f"one of {', '.join(CLIENT_UPDATES)}", client.get("update"))
    _need(isinstance(client.get("train", True), bool), "client.train", "true or false", client.get("train"))
    _need(_is_int(cfg.get("seed")) and cfg["seed"] >= 0, "seed", "an integer >= 0", cfg.get("seed"))
    engine = cfg["engine"]
    _need(engine.get("name") in ENGINES, "engine.name", f"one of {', '.join(ENGINES)}", engine.get("name"))
    faults = cfg.get("faults") or {}
    for kind in ("crash", "corrupt"):
        ids = faults.get(kind) or []
        _need(isinstance(ids, list) and all(_is_int(i) and 0 <= i < fed["num_clients"] for i in ids),
              f"faults.{kind}", f"a list of partition ids in [0, {fed['num_clients'] - 1}]", ids)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts and lists."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(container, dict):
        raise ConfigError("config: expected a mapping at the top level")
    return container  # type: ignore[return-value]
