"""The config a ``flwr run`` hands the apps: composed from Flower-style overrides, fitted, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from fedcomp.config import compose_config, to_container
from fedcomp.core.errors import ConfigError
from fedcomp.flower.protocol import RUN_CONFIG_KEY
from fedcomp.flower.run_config import (
    OVERRIDES_KEY,
    RESULTS_DIR,
    client_config,
    config_from_run,
    federation_size,
    server_config,
)
from fedcomp.flower.setup import config_from_context

RUN_ID = 4242


@pytest.fixture(autouse=True)
def flower_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private Flower home: ``flwr run .`` results go under it."""
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    return tmp_path / "flwr-home"


def _overrides(text: str) -> dict[str, str]:
    """The run config ``flwr run .`` hands the apps (pyproject defaults + ``--run-config``)."""
    return {OVERRIDES_KEY: text, RUN_CONFIG_KEY: ""}


class FakeGrid:
    """A grid whose nodes are already connected (as in Flower's simulation runtime)."""

    def __init__(self, count: int) -> None:
        self.ids = list(range(100, 100 + count))

    def get_node_ids(self) -> list[int]:
        return self.ids


def test_no_overrides_is_the_default_experiment_on_flowers_federation(flower_home: Path) -> None:
    cfg = config_from_run(_overrides(""), RUN_ID, None)
    default = to_container(compose_config([]))
    assert cfg["engine"]["name"] == "flwr"
    assert cfg["task_name"] == default["task_name"] and cfg["compressor_name"] == default["compressor_name"]
    assert cfg["federation"] == default["federation"] and cfg["seed"] == default["seed"]
    assert cfg["output_dir"] == str(flower_home / RESULTS_DIR / str(RUN_ID))
    # Flower's default local federation has 2 SuperNodes: num_clients (nobody chose it) follows
    fitted = config_from_run(_overrides(""), RUN_ID, 2)
    assert fitted["federation"]["num_clients"] == 2
    assert {k: v for k, v in fitted["federation"].items() if k != "num_clients"} == {
        k: v for k, v in default["federation"].items() if k != "num_clients"
    }


def test_overrides_compose_like_the_command_line(flower_home: Path) -> None:
    text = "task=digits compressor=topk compressor.density=0.05 federation.num_rounds=5 output_dir=mine"
    cfg = config_from_run(_overrides(text), RUN_ID, None)
    cli = to_container(compose_config(["engine=flwr", *text.split()]))
    assert cfg["compressor"] == cli["compressor"] and cfg["compressor"]["density"] == 0.05
    assert cfg["federation"]["num_rounds"] == 5 and cfg["task_name"] == "digits"
    assert cfg["output_dir"] == str(flower_home / RESULTS_DIR / "mine")
    absolute = config_from_run(_overrides(f"output_dir={flower_home.parent / 'abs'}"), RUN_ID, None)
    assert absolute["output_dir"] == str(flower_home.parent / "abs")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("compressor=nope", r"^compressor: unknown option 'nope'; allowed: .*topk"),
        ("federation.nope=1", r"^overrides: Could not override 'federation.nope'"),
        ("compressor==", r"^overrides: Error parsing override 'compressor=='"),
        ("federation.num_rounds=0", r"^federation.num_rounds"),
        ("seed=-1", r"^seed: must be an integer >= 0, got -1"),
        ("engine=deployment", r"^engine: under `flwr run` the engine is Flower's own \(flwr\), got 'deployment'"),
        ("task='digits", r"^overrides: No closing quotation"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_run(_overrides(text), RUN_ID, None)
    assert "\n" not in str(info.value)


def test_a_chosen_num_clients_must_match_the_federation() -> None:
    assert config_from_run(_overrides("federation.num_clients=4"), RUN_ID, 4)["federation"]["num_clients"] == 4
    with pytest.raises(ConfigError, match=r"federation.num_clients: must equal the 2 SuperNodes .* got 4$"):
        config_from_run(_overrides("federation.num_clients=4"), RUN_ID, 2)
    # an experiment that sets it chose it too (the lesson: 2 clients)
    assert config_from_run(_overrides("experiment=lesson_bandwidth"), RUN_ID, 2)["federation"]["num_clients"] == 2
    with pytest.raises(ConfigError, match=r"must equal the 3 SuperNodes .* got 2$"):
        config_from_run(_overrides("experiment=lesson_bandwidth"), RUN_ID, 3)


def test_a_carried_config_is_used_as_is_and_checked(tmp_path: Path) -> None:
    carried = to_container(compose_config(["engine=deployment", "federation.num_clients=2", f"output_dir={tmp_path}"]))
    run_config = {RUN_CONFIG_KEY: json.dumps(carried), OVERRIDES_KEY: "compressor=topk"}
    assert config_from_run(run_config, RUN_ID, 2) == carried
    with pytest.raises(ConfigError, match=r"must equal the 3 SuperNodes"):
        config_from_run(run_config, RUN_ID, 3)


def test_a_supernode_reads_the_federation_size_from_its_node_config() -> None:
    context = Context(RUN_ID, 7, {"partition-id": 0, "num-partitions": 3}, RecordDict(), _overrides("task=digits"))
    assert client_config(context)["federation"]["num_clients"] == 3
    assert config_from_context(context) == client_config(context)


def test_the_server_fits_to_the_grid_and_says_where_results_go(
    flower_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = Context(RUN_ID, 0, {}, RecordDict(), _overrides("task=digits"))
    cfg = server_config(context, FakeGrid(2))
    assert cfg["federation"]["num_clients"] == 2
    out = capsys.readouterr().out
    assert out == (
        f"fedcomp: flwr run {RUN_ID}: digits/none, federation.num_clients=2; "
        f"results in {flower_home / RESULTS_DIR / str(RUN_ID)}\n"
    )
    bad = Context(RUN_ID, 0, {}, RecordDict(), _overrides("task=digits federation.num_clients=5"))
    with pytest.raises(ConfigError):
        server_config(bad, FakeGrid(2))
    assert capsys.readouterr().out.startswith("error: federation.num_clients: must equal the 2 SuperNodes")


def test_federation_size_waits_for_the_count_to_settle() -> None:
    class Joining(FakeGrid):
        def get_node_ids(self) -> list[int]:
            self.calls = getattr(self, "calls", 0) + 1
            return self.ids[: min(self.calls, len(self.ids))]  # one more node per poll

    assert federation_size(Joining(3)) == 3
    with pytest.raises(ConfigError, match="no SuperNode connected within 0.3 s"):
        federation_size(FakeGrid(0), timeout=0.3)
