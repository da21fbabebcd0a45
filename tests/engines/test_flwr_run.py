"""The Flower way: ``flwr run .`` in a fresh Flower home runs fedcomp's experiment.

Exactly what a Flower user types, in the project directory, with an empty temporary
``FLWR_HOME``: Flower writes its default configuration (a ``:local:`` connection, 2
simulated SuperNodes) and starts its own local SuperLink, which the three runs share.
Only the SuperLink's ports are moved off Flower's defaults so that parallel test runs
never meet. Every process is started with a tag and stopped by it afterwards (Flower
keeps its local SuperLink running on purpose). Minutes per run: all marked slow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fedcomp.core.env import ray_tmpdir
from fedcomp.core.paths import PROJECT_DIR
from fedcomp.core.rundir import RUN_FILES, is_complete
from fedcomp.engines.deployment.flwr_cli import executable, first_json
from fedcomp.engines.deployment.processes import Processes, flower_env, free_ports, tagged
from fedcomp.flower.run_config import RESULTS_DIR

pytestmark = pytest.mark.extended
RESULTS_LINE = re.compile(r"fedcomp: flwr run (\d+): (\S+), federation.num_clients=(\d+); results in (\S+)")


class FlowerUser:
    """Runs ``flwr`` commands in the project directory with a private, initially empty Flower home."""

    def __init__(self, home: Path) -> None:
        link_port, control_port = free_ports("127.0.0.1", 2)
        env = flower_env(home)
        env |= {"FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(link_port),
                "FLWR_LOCAL_CONTROL_API_PORT": str(control_port), "RAY_TMPDIR": ray_tmpdir()}  # fmt: skip
        self.procs = Processes(env, home.parent / "logs", stop_timeout=10)
        self.count = 0

    def flwr(self, *args: str, timeout: float = 600) -> tuple[int, str]:
        """``flwr <args>``: its exit code and output."""
        self.count += 1
        proc = self.procs.start(f"flwr-{self.count}", [executable("flwr"), *args], cwd=PROJECT_DIR, critical=False)
        code = proc.popen.wait(timeout=timeout)
        return code, proc.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerUser]:
    home = tmp_path_factory.mktemp("flower-user") / "flwr-home"
    who = FlowerUser(home)
    yield who
    assert who.procs.stop_all() == []
    assert not tagged(who.procs.tag), "a Flower process outlived the tests"


def _results(output: str) -> tuple[str, dict, Path]:
    """(flwr run id, fedcomp's config, results directory) from the app log's results line."""
    match = RESULTS_LINE.search(output)
    assert match, output[-3000:]
    run_dir = Path(match.group(4))
    return match.group(1), yaml.safe_load((run_dir / "config.yaml").read_text()), run_dir


@pytest.mark.timeout(900)
def test_flwr_run_dot_runs_the_default_experiment(user: FlowerUser) -> None:
    code, output = user.flwr("run", ".", "--stream")
    assert code == 0, output[-3000:]
    run_id, cfg, run_dir = _results(output)
    assert "Flower configuration not found. Created default configuration" in output  # a fresh home
    assert is_complete(run_dir) and all((run_dir / f).is_file() for f in RUN_FILES)
    assert run_dir == Path(user.procs.env["FLWR_HOME"]) / RESULTS_DIR / run_id  # the documented place
    assert (cfg["task_name"], cfg["compressor_name"], cfg["engine"]["name"]) == ("mnist", "none", "flwr")
    assert cfg["federation"]["num_clients"] == 2  # Flower's default federation: 2 simulated SuperNodes
    assert cfg["federation"]["num_rounds"] == 20 and cfg["federation"]["fraction_fit"] == 0.5
    assert "round  20/20" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_failures"] == 0


@pytest.mark.timeout(600)
def test_run_config_overrides_run_topk(user: FlowerUser) -> None:
    overrides = "task=digits partition=iid compressor=topk federation.num_rounds=2"
    code, output = user.flwr("run", ".", "--stream", "--run-config", f"overrides='{overrides}'")
    assert code == 0, output[-3000:]
    _, cfg, run_dir = _results(output)
    assert is_complete(run_dir)
    assert cfg["compressor_name"] == "topk" and cfg["task_name"] == "digits"
    ledger = pd.read_parquet(run_dir / "ledger.parquet")
    server = ledger[ledger["recorded_by"] == "server"]
    assert len(server) == 2 * 1 * 2 and (server["status"] == "ok").all()  # rounds x cohort (0.5 of 2) x directions
    up = server[server["direction"] == "up"]["payload_bytes"].sum()
    down = server[server["direction"] == "down"]["payload_bytes"].sum()
    assert up < down / 10  # top-k 1% sends a sliver of the model back


@pytest.mark.timeout(600)
def test_a_bad_override_is_a_one_line_error(user: FlowerUser) -> None:
    code, output = user.flwr("run", ".", "--stream", "--run-config", "overrides='compressor=nope'")
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: compressor: unknown option 'nope'; allowed: "), output[-3000:]
    assert "topk" in errors[0]
    assert not RESULTS_LINE.search(output)
    run_id = re.search(r"Successfully started run (\d+)", output).group(1)
    code, listing = user.flwr("ls", "--run-id", run_id, "--format", "json", timeout=120)
    assert code == 0 and first_json(listing)["runs"][0]["status"] == "finished:failed"
