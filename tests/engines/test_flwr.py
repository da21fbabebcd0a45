"""``engine=flwr``: fedcomp's experiment through ``flwr run`` on a local simulation SuperLink.

The end-to-end comparison with the Ray engine runs two simulations (about two minutes
on 2 shared cores) and is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fedcomp.core.errors import ConfigError
from fedcomp.core.rundir import is_complete
from fedcomp.engines.deployment.processes import alive, tagged
from fedcomp.engines.flwr import check_config, federation_config, run_flwr
from fedcomp.engines.launch import execute, prepare
from tests.helpers import run_config

#: A message's metadata carries ids Flower draws at random: the run and node ids and, under
#: ``flwr run``, the sending and receiving task ids (64-bit integers, varint-encoded in up
#: to 10 bytes; the deprecated ``run_simulation`` behind the Ray engine puts a dummy task
#: id 1 there). ``id_bytes`` is what they take of wire and link; the requests around each
#: object carry the run and node ids once more per object (a few bytes each).
REQUEST_ID_BYTES_PER_MESSAGE = 64


def test_federation_config_comes_from_the_fedcomp_config(tmp_path: Path) -> None:
    cfg = run_config(tmp_path, "engine=flwr", "federation.num_clients=3", "engine.num_cpus=2",
                     "engine.client_resources.num_gpus=0.5")  # fmt: skip
    assert federation_config(cfg) == {
        "num-supernodes": 3,
        "client-resources-num-cpus": 1,
        "client-resources-num-gpus": 0.5,
        "init-args-logging-level": "error",
        "init-args-log-to-driver": False,
        "verbose": False,
        "init-args-num-cpus": 2,
    }
    check_config(cfg)


def test_bad_engine_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"engine.num_supernodes: must equal federation.num_clients=10"):
        check_config(run_config(tmp_path, "engine=flwr", "engine.num_supernodes=2"))
    with pytest.raises(ConfigError, match=r"engine.poll_interval: must be a number > 0, got -1"):
        check_config(run_config(tmp_path, "engine=flwr", "engine.poll_interval=-1"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_flwr_engine_writes_what_the_ray_engine_writes(tmp_path: Path) -> None:
    """``engine=flwr task=digits federation.num_rounds=2`` against Ray, same seed; no SuperLink left."""
    overrides = ("task=digits", "federation.num_rounds=2")
    execute(run_config(tmp_path / "ray", *overrides))
    cfg = run_config(tmp_path / "flwr", "engine=flwr", *overrides)
    prepare(cfg)  # what execute() does before it starts the engine
    record = run_flwr(cfg)
    assert record["run_status"] == "finished:completed" and is_complete(tmp_path / "flwr")
    assert record["leftover_pids"] == [] and not alive(record["superlink_pid"])
    assert not tagged(record["process_tag"]), "a process of the flwr run is still alive"

    keys = ["round", "phase", "partition_id", "direction", "recorded_by"]
    ray = pd.read_parquet(tmp_path / "ray" / "ledger.parquet").sort_values(keys).reset_index(drop=True)
    flwr = pd.read_parquet(tmp_path / "flwr" / "ledger.parquet").sort_values(keys).reset_index(drop=True)
    assert len(ray) == len(flwr) == 2 * 5 * 2 * 2  # rounds x cohort x directions x recording sides
    # wire and link bytes are equal but for the bytes of Flower's random ids (id_bytes); every
    # other column (keys, status, dense and payload bytes) is equal as it is
    for ledger in (ray, flwr):
        for column in ("wire_bytes", "link_bytes"):
            ledger[column] -= ledger["id_bytes"]
    same = [c for c in ray.columns if c not in ("run_id", "node_id", "id_bytes", "request_bytes")]
    pd.testing.assert_frame_equal(ray[same], flwr[same])
    assert (flwr["status"] == "ok").all()
    assert (ray["request_bytes"] - flwr["request_bytes"]).abs().max() <= REQUEST_ID_BYTES_PER_MESSAGE

    metrics = [pd.read_parquet(tmp_path / d / "metrics.parquet").drop(columns="run_id") for d in ("ray", "flwr")]
    pd.testing.assert_frame_equal(*metrics)
    config = (tmp_path / "flwr" / "config.yaml").read_text()
    assert "name: flwr" in config
