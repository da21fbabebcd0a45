"""Bad input fails before any engine starts, with the key and the allowed values."""

import subprocess
import sys

import pytest

from fedcomp.config import check_command_line
from fedcomp.core.errors import ConfigError
from fedcomp.engines.launch import prepare
from tests.helpers import run_config


@pytest.mark.parametrize(
    "override, key",
    [
        ("federation.fraction_fit=1.5", "federation.fraction_fit"),
        ("federation.fraction_fit=0", "federation.fraction_fit"),
        ("federation.num_rounds=-1", "federation.num_rounds"),
        ("federation.num_clients=0", "federation.num_clients"),
        ("federation.min_fit_clients=20", "federation.min_fit_clients"),
        ("client.local_epochs=0", "client.local_epochs"),
        ("client.update=gradients", "client.update"),
        ("faults.crash=[99]", "faults.crash"),
    ],
)
def test_bad_federation_values_name_the_key(tmp_path, override, key):
    cfg = run_config(tmp_path, "task=digits", "partition=iid", override)
    with pytest.raises(ConfigError, match=key):
        prepare(cfg)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["compressor=topk", "compressor.density=1.5"], "compressor.density"),
        (["compressor=quant8", "compressor.bits=3"], "compressor.bits"),
        (["compressor=freeze_convs", "compressor.patterns=[nothing*]"], "compressor.patterns"),
        (["partition=dirichlet", "partition.alpha=0"], "partition.alpha"),
        (["task=mnist", "task.model=foo"], "task.model"),
        (["federation.num_clients=5000", "federation.fraction_fit=0.001"], "federation.num_clients"),
    ],
)
def test_bad_component_values_name_the_key(tmp_path, overrides, key):
    cfg = run_config(tmp_path, "task=digits", *overrides)
    with pytest.raises(ValueError, match=key):
        prepare(cfg)


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fedcomp.run", *args],
        check=False, capture_output=True, text=True, timeout=120,
    )


def test_cli_component_errors_exit_2_with_the_key(tmp_path):
    result = _run_cli("task=digits", "compressor=topk", "compressor.density=1.5", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "compressor.density" in result.stderr and "(0, 1]" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["federation.num_client=3"], "federation.num_client: unknown key; did you mean federation.num_clients?"),
        (["+federaton.num_rounds=3"], "federaton.num_rounds: unknown key; did you mean federation.num_rounds?"),
        (["compressor=zip9"], "compressor: unknown option 'zip9'"),
        (["federation.fraction_fit=1.5"], "federation.fraction_fit: must be a number in (0, 1], got 1.5"),
        (["task.model=foo"], "task.model: must be one of cnn, fedavg_cnn, 2nn, got 'foo'"),
        (["wire.layout=foo"], "wire.layout: must be one of packed, arrays, got 'foo'"),
    ],
)
def test_cli_rejects_with_one_line_exit_2_and_no_directory(tmp_path, args, expected):
    run_dir = tmp_path / "run"
    result = _run_cli(*args, f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {expected}" + result.stderr.split(expected, 1)[1].rstrip()]
    assert result.stdout == ""
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_cli_sweep_with_one_bad_run_creates_no_sweep_directory(tmp_path):
    result = _run_cli("-m", "task=digits", "compressor=topk", "compressor.density=0.1,1.5",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2 and "compressor.density" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["federation.num_client=3"], ("keys under federation: fraction_evaluate, fraction_fit, min_fit_clients, "
                                       "num_clients, num_rounds")),
        (["compresor=topk"], "compresor: unknown key; did you mean compressor?"),
        (["+foo.bar=1"], "foo.bar: unknown key; top-level keys: "),
        (["compressor=none", "compressor.density=0.1"], "compressor.density: unknown key; did you mean "),
        (["federation.num_rounds=3", "+federation.num_rounds=4"],
         "federation.num_rounds: already in the config; set it without the '+' (federation.num_rounds=4)"),
        (["~faults.crsh"], "faults.crsh: unknown key; did you mean faults.crash?"),
        (["experiment=lesson"], "experiment: unknown option 'lesson'; did you mean lesson_bandwidth?"),
        (["logger=wandb"], "logger: unknown option 'wandb'; allowed: mlflow, none"),
        (["compressor=none,topk"], "compressor=none,topk: a sweep over several values needs -m (--multirun)"),
        (["federation.num_rounds=${nope}"], "federation.num_rounds: Interpolation key 'nope' not found"),
        (["seed=[1,"], "seed=[1,: not an override"),
    ],
)
def test_check_command_line_names_the_key_and_what_is_allowed(argv, message):
    with pytest.raises(ConfigError) as err:
        check_command_line(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_check_command_line_accepts_what_hydra_accepts():
    assert check_command_line(["--help"]) is None
    (pythia,) = check_command_line(["task=pythia14m", "+task.config_overrides.num_hidden_layers=2"])
    assert pythia["task"]["config_overrides"] == {"num_hidden_layers": 2}  # below a free-form mapping
    (lesson,) = check_command_line(["experiment=lesson_bandwidth", "hydra.run.dir=/tmp/x", "~faults.rounds"])
    assert lesson["task_name"] == "pythia14m" and "rounds" not in lesson["faults"]
    sweep = check_command_line(["-m", "task=digits", "compressor=none,topk", "seed=0,1"])
    assert [(c["compressor_name"], c["seed"]) for c in sweep] == [("none", 0), ("none", 1), ("topk", 0), ("topk", 1)]
    assert sweep[2]["compressor"]["density"] == 0.01


def test_client_limit_is_computed_once_and_stated_the_same_way(tmp_path):
    messages = []
    for num_clients in (100000, 1347, 500):
        cfg = run_config(tmp_path, "task=digits", "partition=dirichlet", "federation.fraction_fit=0.01",
                         f"federation.num_clients={num_clients}")
        with pytest.raises(ConfigError, match="federation.num_clients") as err:
            prepare(cfg)
        messages.append(str(err.value).split("; ", 1)[1])
    assert messages[0] == messages[1] == messages[2]
    assert "task digits's 1347 examples support at most" in messages[0]
