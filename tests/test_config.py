"""Bad input fails before any engine starts, with the key and the allowed values."""

import subprocess
import sys

import pytest

from fedcomp.engines.launch import prepare
from fedcomp.core.errors import ConfigError
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
        capture_output=True, text=True, timeout=120,
    )


def test_cli_exits_nonzero_before_ray_starts(tmp_path):
    result = _run_cli("task=digits", "federation.fraction_fit=1.5", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "federation.fraction_fit" in result.stderr and "(0, 1]" in result.stderr
    assert "round" not in result.stdout and not (tmp_path / "ledger.parquet").exists()


def test_cli_component_errors_exit_2_with_the_key(tmp_path):
    result = _run_cli("task=digits", "compressor=topk", "compressor.density=1.5", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "compressor.density" in result.stderr and "(0, 1]" in result.stderr


def test_cli_unknown_key_and_group_option_fail(tmp_path):
    unknown_key = _run_cli("federation.num_client=3", f"hydra.run.dir={tmp_path}")
    assert unknown_key.returncode != 0 and "num_client" in unknown_key.stderr
    unknown_option = _run_cli("compressor=zip9", f"hydra.run.dir={tmp_path}")
    assert unknown_option.returncode != 0
    assert "zip9" in unknown_option.stderr and "topk" in unknown_option.stderr
