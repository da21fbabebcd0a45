"""Simulation attached to an existing Ray cluster (``engine.ray_address``).

The test starts its own one-node cluster (``ray start --head --block``) on free ports, runs
a 1-round digits simulation with ``engine.ray_address=127.0.0.1:<port>``, checks that the
cluster is still up after Flower's Ray backend called ``ray.shutdown()``, and stops the
cluster by PID (never ``ray stop``, which would stop every Ray instance on the machine,
including other people's simulations).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedcomp.core.rundir import RUN_FILES
from fedcomp.engines.deployment.processes import Processes, free_ports, tagged
from fedcomp.engines.simulation import backend_config
from tests.helpers import run_config

RAY = Path(sys.executable).parent / "ray"


def _ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
            "RAY_DEDUP_LOGS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env["PATH"] = str(RAY.parent) + os.pathsep + env.get("PATH", "")
    return env


def _cluster_resources(address: str) -> dict:
    """Resources of the cluster at ``address``, asked from a fresh driver process."""
    code = (
        "import json, sys, ray; from ray._private.state import jobs;"
        "ray.init(address=sys.argv[1], logging_level='error', log_to_driver=False);"
        "print(json.dumps({'cpus': ray.cluster_resources().get('CPU', 0),"
        " 'nodes': sum(1 for n in ray.nodes() if n['Alive']), 'jobs': len(jobs())})); ray.shutdown()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, address], env=_ray_env(), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot reach the Ray cluster at {address}: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture()
def ray_cluster(tmp_path: Path):
    """A local one-node Ray cluster (2 CPUs) on free ports; stopped by PID afterwards."""
    if not RAY.exists():
        pytest.skip(f"no `ray` CLI next to {sys.executable}")
    port, client_port, agent_port, agent_grpc, metrics, node_mgr, obj_mgr, env_agent = free_ports("127.0.0.1", 8)
    temp_dir = tempfile.mkdtemp(prefix="fcray-", dir="/tmp")  # short: Ray's unix sockets live here
    procs = Processes(_ray_env(), tmp_path, stop_timeout=8)
    argv = [
        str(RAY), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(port),
        "--num-cpus", "2", "--num-gpus", "0",
        "--include-dashboard", "false",
        "--disable-usage-stats",
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics),
        "--node-manager-port", str(node_mgr),
        "--object-manager-port", str(obj_mgr),
        "--runtime-env-agent-port", str(env_agent),
        "--temp-dir", temp_dir,
    ]  # fmt: skip
    head = procs.start("ray-head", argv)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if head.popen.poll() is not None:
                pytest.skip(
                    f"`ray start --head` exited with {head.popen.returncode}:\n{head.log_path.read_text()[-1500:]}"
                )
            try:
                _cluster_resources(address)
                break
            except RuntimeError as err:
                if time.monotonic() > deadline:
                    pytest.skip(f"the local Ray cluster did not come up within 90 s: {err}")
                time.sleep(1)
        yield address, procs
    finally:
        leftovers = procs.stop_all()
        import shutil

        shutil.rmtree(temp_dir, ignore_errors=True)
        assert leftovers == [], f"Ray processes left behind: {leftovers}"
        assert not tagged(procs.tag)


def test_backend_config_attaches_to_cluster() -> None:
    cfg = backend_config({"ray_address": "auto", "num_cpus": 4, "client_resources": {"num_cpus": 2, "num_gpus": 0.5}})
    assert cfg["init_args"]["address"] == "auto"
    assert "num_cpus" not in cfg["init_args"]  # Ray refuses num_cpus when attaching to a cluster
    assert cfg["client_resources"] == {"num_cpus": 2.0, "num_gpus": 0.5}


@pytest.mark.timeout(300)
def test_simulation_on_existing_ray_cluster(ray_cluster, tmp_path: Path) -> None:
    from fedcomp.engines.launch import execute

    address, procs = ray_cluster
    before = _cluster_resources(address)
    assert before["cpus"] == 2.0 and before["nodes"] == 1
    head = procs.started[0]
    cfg = run_config(
        tmp_path,
        "task=digits",
        "partition=iid",
        "federation.num_clients=2",
        "federation.fraction_fit=1.0",
        "federation.num_rounds=1",
        "engine=simulation",
        f"engine.ray_address={address}",
        "engine.client_resources.num_cpus=1",
        "engine.client_resources.num_gpus=0",
    )
    summary = execute(cfg)
    assert summary is not None and summary["num_failures"] == 0
    assert all((tmp_path / name).is_file() for name in RUN_FILES)
    # Flower's Ray backend called ray.shutdown() in this process: that only disconnects the
    # driver. The cluster, and every process it had before the run, is still there.
    after = _cluster_resources(address)
    assert (after["cpus"], after["nodes"]) == (before["cpus"], before["nodes"])
    # the simulation ran as a job of this cluster (its driver), besides the two probes
    assert after["jobs"] == before["jobs"] + 2
    assert head.popen.poll() is None, "the `ray start --head --block` process exited"
    import ray

    assert not ray.is_initialized()
