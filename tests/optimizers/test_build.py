"""The server config group: every conf/server/*.yaml builds; bad values name the key."""

from __future__ import annotations

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedcomp.config import CONF_DIR
from fedcomp.core.errors import ConfigError
from fedcomp.optimizers import OPTIMIZERS, build_optimizer
from fedcomp.optimizers.rules import FedAvg, FedAvgM

NAMES = sorted(p.stem for p in (CONF_DIR / "server").glob("*.yaml"))


def compose_server(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["~task", "~partition", *overrides])
    return OmegaConf.to_container(cfg.server, resolve=True)


def test_every_rule_has_a_config_and_fedavg_is_the_default():
    assert NAMES == sorted(OPTIMIZERS) == ["fedadam", "fedavg", "fedavgm", "fedyogi"]
    default = build_optimizer(compose_server([]))
    assert isinstance(default, FedAvg) and default.lr == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_each_yaml_is_documented_and_builds(name):
    text = (CONF_DIR / "server" / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    assert yaml.safe_load(text)["name"] == name
    assert build_optimizer(compose_server([f"server={name}"])).name == name


def test_command_line_overrides_reach_the_rule():
    opt = build_optimizer(
        compose_server(["server=fedavgm", "server.momentum=0.5", "server.lr=0.7"])
    )
    assert isinstance(opt, FedAvgM) and opt.momentum == 0.5 and opt.lr == 0.7


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"name": "fedprox"}, "server.name"),
        ({"lr": 1.0}, "server.name"),
        ({"name": "fedavg", "lr": 0}, "server.lr"),
        ({"name": "fedavg", "lr": -1}, "server.lr"),
        ({"name": "fedavgm", "momentum": 1.0}, "server.momentum"),
        ({"name": "fedadam", "beta2": 1.5}, "server.beta2"),
        ({"name": "fedyogi", "tau": 0}, "server.tau"),
        ({"name": "fedavg", "momentum": 0.9}, "server.momentum"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key):
        build_optimizer(cfg)
