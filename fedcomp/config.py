"""Compose and validate the Hydra config: bad input fails here, before any engine starts.

Only Hydra and :mod:`fedcomp.core`: the Flower apps compose configs with it too (``flwr run``).
Building the components (their own checks) is :func:`fedcomp.engines.launch.prepare`.
:func:`check_command_line` checks a whole command line (every run of a sweep) the way
``@hydra.main`` will read it, before Hydra creates any directory: unknown keys (with
``+`` too), unknown group options and bad values fail in one line naming the key.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedcomp.core.errors import ConfigError
from fedcomp.core.formula import cohort_size
from fedcomp.core.formula import validate as validate_formula
from fedcomp.core.instantiate import instantiate_checked
from fedcomp.core.paths import CONF_DIR


def _dirname(text: str) -> str:
    """A sweep run's directory name from its overrides: one level, ``/`` folded to ``_``.

    A value such as ``task.checkpoint=results/checkpoints/mnist.pt`` would otherwise nest
    the run three directories deep, and runs of one sweep would share a last path part.
    """
    return str(text).replace("/", "_")


if not OmegaConf.has_resolver("fedcomp.dirname"):
    OmegaConf.register_new_resolver("fedcomp.dirname", _dirname)

CLIENT_UPDATES = ("delta", "weights")
LOGGERS = ("none", "mlflow")
ENGINES = ("inprocess", "simulation", "deployment", "flwr")


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``conf/config.yaml`` with overrides outside of ``@hydra.main`` (tests, tools).

    Keys that ``@hydra.main`` fills from its runtime (group choices, output directory)
    are filled here from the composition; pass ``output_dir=...`` to set where a run
    writes.
    """
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=overrides or [], return_hydra_config=True)
    return _fill_runtime_keys(cfg)


def load_task(name: str) -> Any:
    """Instantiate ``conf/task/<name>.yaml``."""
    options = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
    if name not in options:
        raise ConfigError(f"task: unknown task {name!r}; allowed: {', '.join(options)}")
    cfg = compose_config([f"task={name}"])
    return instantiate_checked(cfg.task, "task", _convert_="all")


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
    window = (cfg.get("report") or {}).get("final_window", 5)
    _need(_is_int(window) and window >= 1, "report.final_window", "an integer >= 1", window)
    engine = cfg["engine"]
    _need(engine.get("name") in ENGINES, "engine.name", f"one of {', '.join(ENGINES)}", engine.get("name"))
    faults = cfg.get("faults") or {}
    for kind in ("crash", "corrupt", "nan", "examples"):
        ids = faults.get(kind) or []
        _need(isinstance(ids, list) and all(_is_int(i) and 0 <= i < fed["num_clients"] for i in ids),
              f"faults.{kind}", f"a list of partition ids in [0, {fed['num_clients'] - 1}]", ids)
    _check_logger(cfg)


def _check_logger(cfg: dict[str, Any]) -> None:
    logger = cfg.get("logger") or {"name": "none"}
    _need(isinstance(logger, dict) and logger.get("name") in LOGGERS, "logger.name",
          f"one of {', '.join(LOGGERS)}", logger)
    if logger["name"] == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow: MLflow is not installed; pip install 'fedcomp[mlflow]'")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts and lists."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(container, dict):
        raise ConfigError("config: expected a mapping at the top level")
    return container  # type: ignore[return-value]


# ------------------------------------------------------------------ the command line
#: Hydra flags the checks leave to Hydra: it prints something instead of running
#: (``--help``, ``--cfg``...) or reads configs from somewhere else (``-cp``, ``-cd``).
HYDRA_ONLY_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun", "config_path",
                    "config_dir")


def check_command_line(argv: list[str], config_name: str = "config") -> list[dict[str, Any]] | None:
    """Check a command line the way ``@hydra.main`` would read it, before Hydra runs it.

    Hydra creates the run directory (and ``.hydra/``) before the task function starts, and
    reports unknown keys with a multi-line message and exit code 1; ``+key=value`` adds a
    key nobody reads. Checking here first means a rejected command creates nothing and
    fails with one line. Every run of a sweep (``-m``) is checked.

    Returns
    -------
    list of dict or None
        The resolved config of every run (one unless ``-m``); ``None`` when the command
        asks Hydra to print something (``--help``, ``--cfg``...), which Hydra then does.

    Raises
    ------
    ConfigError
        One line naming the override and the allowed values or the closest valid key.
    """
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in HYDRA_ONLY_FLAGS):
        return None
    name = args.config_name or config_name
    parsed = _parse_overrides(args.overrides)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not args.multirun:
        raise ConfigError(f"{sweeps[0]}: a sweep over several values needs -m (--multirun)")
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch] if sweeps else [args.overrides]
    baselines: dict[tuple[str, ...], DictConfig] = {}
    return [check_overrides(job, name, baselines) for job in jobs]


def check_overrides(
    overrides: list[str], config_name: str = "config", baselines: dict[tuple[str, ...], DictConfig] | None = None
) -> dict[str, Any]:
    """The resolved, validated config of one run; :class:`ConfigError` (one line) if it is not.

    Group choices must name a file of their group; keys must exist in the config the
    choices compose (``+key`` only below a free-form mapping declared ``{}``, such as
    ``task.config_overrides``); then :func:`validate` checks the values. ``baselines``
    caches the composition of each set of group choices across the runs of a sweep.
    """
    parsed = _parse_overrides(overrides)
    groups = config_groups()
    choices = [o for o in parsed if o.key_or_group.startswith("hydra") or o.key_or_group in groups]
    for override in choices:
        if override.key_or_group in groups:
            _check_option(override.key_or_group, override.value(), groups[override.key_or_group])
    key = tuple(o.input_line for o in choices)
    cache = {} if baselines is None else baselines
    if key not in cache:
        cache[key] = _compose_or_fail([o.input_line for o in choices], config_name)
    cfg = copy.deepcopy(cache[key])  # the runs of a sweep share the cached baseline
    OmegaConf.set_struct(cfg, False)
    known = _flat_keys(OmegaConf.to_container(cache[key], resolve=False))
    for override in parsed:
        if override not in choices:
            _apply(cfg, override, known + sorted(groups))
    try:
        container = to_container(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{getattr(err, 'full_key', None) or 'config'}: {_first_line(err)}") from err
    validate(container)
    return container


def config_groups() -> dict[str, list[str]]:
    """Config group name -> its options (the YAML files in ``conf/<group>/``; Hydra's own excluded)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(CONF_DIR.iterdir())
        if d.is_dir() and d.name != "hydra"
    }


def _parse_overrides(overrides: list[str]) -> list[Override]:
    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            parsed.append(parser.parse_override(line))
        except HydraException as err:
            raise ConfigError(f"{line}: not an override ({_first_line(err)}); write key=value") from err
    return parsed


def _check_option(group: str, value: Any, options: list[str]) -> None:
    if value is None or value in options:
        return
    close = difflib.get_close_matches(str(value), options, n=1) or [o for o in options if o.startswith(str(value))]
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"{group}: unknown option {value!r}; {hint}allowed: {', '.join(options)}")


def _compose_or_fail(overrides: list[str], config_name: str) -> DictConfig:
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_first_line(err)) from err
    return _fill_runtime_keys(cfg)


def _fill_runtime_keys(cfg: DictConfig) -> DictConfig:
    """Fill the keys ``@hydra.main`` sets at run time (group choices, output directory)."""
    choices = cfg.hydra.runtime.choices
    OmegaConf.set_struct(cfg, False)
    cfg.compressor_name = choices.compressor
    cfg.task_name = choices.task
    if OmegaConf.is_missing(cfg, "output_dir") or "hydra:" in str(cfg._get_node("output_dir")._value()):
        cfg.output_dir = str(Path("results") / "runs" / f"composed_{choices.task}_{choices.compressor}")
    del cfg["hydra"]
    OmegaConf.set_struct(cfg, True)
    return cfg


def _apply(cfg: DictConfig, override: Override, known: list[str]) -> None:
    """Apply one key override to ``cfg`` after checking its key exists (or may be added)."""
    key = override.key_or_group
    exists = OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT
    if override.is_delete():
        if not exists:
            raise ConfigError(_unknown(key, known))
        parent, _, leaf = key.rpartition(".")
        del (OmegaConf.select(cfg, parent) if parent else cfg)[leaf]
        return
    if override.is_add() and exists:
        raise ConfigError(f"{key}: already in the config; set it without the '+' ({override.input_line[1:]})")
    if not exists and not (_open_mapping(cfg, key) or (override.is_add() and _target_accepts(cfg, key))):
        raise ConfigError(_unknown(key, known))
    OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)


_ABSENT = object()


def _open_mapping(cfg: DictConfig, key: str) -> bool:
    """True when ``key`` falls below a free-form mapping (declared ``{}`` in the YAML)."""
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:depth]), default=_ABSENT)
        if node is not _ABSENT:
            return isinstance(node, DictConfig) and len(node) == 0
    return False


def _target_accepts(cfg: DictConfig, key: str) -> bool:
    """True when ``key`` names an argument of the ``_target_`` class its parent builds.

    ``+compressor.stages.0.scope=model`` sets a setting the YAML leaves at its default:
    allowed because ``TopK`` takes ``scope``; a typo (``+compressor.stages.0.scoop``) is not.
    """
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else None
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str) or "." not in target:
        return False
    module, _, name = target.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return False
    return leaf in params


def _unknown(key: str, known: list[str]) -> str:
    """One line for an unknown ``key``: the closest valid key and the keys beside it."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    parent = key.rpartition(".")[0]
    siblings = sorted({k.rpartition(".")[2] for k in known if parent and k.rpartition(".")[0] == parent})
    if siblings:
        return f"{key}: unknown key; {hint}keys under {parent}: {', '.join(siblings)}"
    return f"{key}: unknown key; {hint}top-level keys: {', '.join(sorted({k.split('.')[0] for k in known}))}"


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key path of a nested mapping (``federation.num_clients``...); lists are leaves."""
    keys = []
    for name, value in node.items() if isinstance(node, dict) else ():
        path = f"{prefix}{name}"
        keys.append(path)
        keys += _flat_keys(value, f"{path}.")
    return keys


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
