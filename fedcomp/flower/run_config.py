"""The fedcomp config of a ``flwr run``: carried by fedcomp, or composed from Flower-style overrides.

Two ways reach the apps through Flower's run config (``[tool.flwr.app.config]`` in
pyproject.toml):

- fedcomp's own engines (``engine=deployment``, ``engine=flwr``) carry the resolved,
  already validated config as JSON in ``fedcomp-config``;
- a Flower user's ``flwr run .`` carries Hydra overrides in ``overrides`` (empty: the
  default experiment), e.g. ``flwr run . --run-config "overrides='compressor=topk
  federation.num_rounds=5'"``. They are composed with ``engine=flwr`` exactly as
  ``python -m fedcomp.run`` composes its command line and checked by the same
  :func:`fedcomp.config.validate`; a bad one is a one-line :class:`ConfigError` (printed
  as ``error: ...``, as the CLI prints it). The run writes into
  ``$FLWR_HOME/fedcomp-runs/<flwr run id>/`` unless the overrides set ``output_dir``
  (a relative one is taken under ``$FLWR_HOME/fedcomp-runs/``).

The federation's size is Flower's (``options.num-supernodes`` /
``--federation-config num-supernodes=N``): ``federation.num_clients`` follows it unless
the overrides (or an experiment they select) chose it, in which case the two must be
equal. The ServerApp counts the grid's nodes (:func:`server_config`); a SuperNode reads
``num-partitions`` from its node config (:func:`client_config`), so both sides compose
the same config.
"""

from __future__ import annotations

import functools
import json
import shlex
import time
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid
from flwr.supercore.utils import get_flwr_home
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedcomp.config import compose_config, to_container, validate
from fedcomp.core.errors import ConfigError, one_line
from fedcomp.core.paths import CONF_DIR
from fedcomp.flower.protocol import RUN_CONFIG_KEY

#: Run-config key of the Hydra overrides of a ``flwr run .`` (a space-separated string).
OVERRIDES_KEY = "overrides"
#: Folder under the Flower home where ``flwr run .`` results go.
RESULTS_DIR = "fedcomp-runs"
NUM_CLIENTS = "federation.num_clients"
#: Seconds the node count must stay the same before the ServerApp takes it as the federation's size.
SETTLE_S = 1.0


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _compose(overrides: list[str]) -> dict[str, Any]:
    """Compose ``engine=flwr`` + ``overrides``; Hydra's errors as one-line ConfigErrors."""
    try:
        return to_container(compose_config(["engine=flwr", *overrides]))
    except MissingConfigException as err:
        group, _, value = str(err.missing_cfg_file).partition("/")
        allowed = ", ".join(err.options or [])
        raise ConfigError(f"{group}: unknown option {value!r}; allowed: {allowed}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"overrides: {one_line(str(err))}") from None


@functools.lru_cache(maxsize=1)
def _default_num_clients() -> int:
    """``federation.num_clients`` of ``conf/config.yaml`` (what nobody chose)."""
    return int(OmegaConf.load(CONF_DIR / "config.yaml").federation.num_clients)


def _mismatch(num_clients: int, size: int) -> ConfigError:
    return ConfigError(
        f"{NUM_CLIENTS}: must equal the {size} SuperNodes of the federation Flower started "
        f"(options.num-supernodes; change it with `flwr run . --federation-config num-supernodes={num_clients}` "
        f"or set {NUM_CLIENTS}={size}), got {num_clients}"
    )


@functools.lru_cache(maxsize=4)
def _composed(overrides_text: str, size: int | None, run_id: int, home: str) -> str:
    """The composed, fitted and validated config as JSON (cached: ClientApps call per message)."""
    try:
        overrides = shlex.split(overrides_text)
    except ValueError as err:
        raise ConfigError(f"overrides: {err} in {overrides_text!r}") from None
    cfg = _compose(overrides)
    num_clients = cfg["federation"]["num_clients"]
    if size is not None and num_clients != size:
        chosen = any(_key(o) == NUM_CLIENTS for o in overrides) or num_clients != _default_num_clients()
        if chosen:
            raise _mismatch(num_clients, size)
        cfg = _compose([*overrides, f"{NUM_CLIENTS}={size}"])
    if cfg["engine"]["name"] != "flwr":
        raise ConfigError(f"engine: under `flwr run` the engine is Flower's own (flwr), got {cfg['engine']['name']!r}")
    results = Path(home) / RESULTS_DIR
    named = [o.split("=", 1)[1] for o in overrides if _key(o) == "output_dir"]
    cfg["output_dir"] = str(results / named[-1]) if named else str(results / str(run_id))
    validate(cfg)
    return json.dumps(cfg)


def config_from_run(run_config: dict[str, Any], run_id: int, size: int | None) -> dict[str, Any]:
    """The fedcomp config for a run with ``run_config``; ``size``: the federation's SuperNodes (None: unknown).

    Raises
    ------
    ConfigError
        A bad override, or a federation whose size differs from a chosen ``federation.num_clients``.
    """
    carried = str(run_config.get(RUN_CONFIG_KEY) or "")
    if carried:
        cfg = json.loads(carried)
        if size is not None and int(cfg["federation"]["num_clients"]) != size:
            raise _mismatch(int(cfg["federation"]["num_clients"]), size)
        return cfg
    overrides = str(run_config.get(OVERRIDES_KEY) or "")
    return json.loads(_composed(overrides, size, int(run_id), str(get_flwr_home())))


def client_config(context: Context) -> dict[str, Any]:
    """The config on a SuperNode: the federation's size is ``num-partitions`` of its node config."""
    size = context.node_config.get("num-partitions")
    return config_from_run(dict(context.run_config), context.run_id, None if size is None else int(size))


def federation_size(grid: Grid, timeout: float = 60.0) -> int:
    """The number of nodes on ``grid`` once it has stayed the same for :data:`SETTLE_S` seconds.

    Flower's simulation runtime registers all its SuperNodes at once, as the ServerApp
    starts; real SuperNodes may still be connecting, which is why a run that carries
    its config (fedcomp's engines) never calls this.
    """
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(grid.get_node_ids())
        if now != count:
            count, since = now, time.monotonic()
        elif count > 0 and time.monotonic() - since >= SETTLE_S:
            return count
        time.sleep(0.1)
    if count <= 0:
        raise ConfigError(f"{NUM_CLIENTS}: no SuperNode connected within {timeout:g} s; start the federation first")
    return count


def server_config(context: Context, grid: Grid) -> dict[str, Any]:
    """The config in the ServerApp; prints (to the app log) where the results go, or the error.

    A carried config is used as is (its engine checked the federation's size); an
    overrides config is fitted to the grid's node count (:func:`federation_size`).
    """
    try:
        carried = bool(context.run_config.get(RUN_CONFIG_KEY))
        cfg = config_from_run(dict(context.run_config), context.run_id, None if carried else federation_size(grid))
    except ConfigError as err:
        print(f"error: {err}", flush=True)
        raise
    if not carried:
        print(
            f"fedcomp: flwr run {context.run_id}: {cfg['task_name']}/{cfg['compressor_name']}, "
            f"{NUM_CLIENTS}={cfg['federation']['num_clients']}; results in {cfg['output_dir']}",
            flush=True,
        )
    return cfg
