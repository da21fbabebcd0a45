"""The deployment's own settings: secure defaults, clear errors, the private Flower home, the report."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedcomp.core.errors import ConfigError
from fedcomp.engines.deployment.engine import check_config
from fedcomp.engines.deployment.flwr_cli import CONNECTION, FlwrCli, first_json
from fedcomp.engines.deployment.reconcile import format_report
from tests.helpers import run_config

DEPLOY = ("engine=deployment", "task=digits", "federation.num_clients=2")


def test_tls_and_supernode_auth_are_on_by_default(tmp_path: Path) -> None:
    engine = run_config(tmp_path, *DEPLOY)["engine"]
    assert engine["tls"] is True and engine["supernode_auth"] is True
    check_config(run_config(tmp_path, *DEPLOY))


def test_insecure_mode_turns_supernode_auth_off(tmp_path: Path) -> None:
    cfg = run_config(tmp_path, *DEPLOY, "engine.tls=false")
    assert cfg["engine"]["supernode_auth"] is False
    check_config(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("engine.tls=false", "engine.supernode_auth=true"), r"engine.supernode_auth: must be false when engine.tls"),
        (("engine.tls=yes",), r"engine.tls: must be true or false, got 'yes'"),
        (("engine.superlink_address=127.0.0.1:9",), r"engine.root_certificates: with engine.superlink_address"),
        (("engine.num_supernodes=3",), r"engine.num_supernodes: must equal federation.num_clients=2"),
        (("engine.run_timeout=0",), r"engine.run_timeout: must be a number > 0, got 0"),
        (("engine.supernode_ports=[1]",), r"engine.supernode_ports: must be null or a list of 2 ports"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(run_config(tmp_path, *DEPLOY, *overrides))


def test_external_superlink_with_its_ca_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "their-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    external = ("engine.superlink_address=10.0.0.1:9093", f"engine.root_certificates={ca}")
    check_config(run_config(tmp_path, *DEPLOY, *external))


def test_flower_home_names_one_connection(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    FlwrCli(tmp_path / "tls", "127.0.0.1:9093", {}, root_certificates=ca)
    FlwrCli(tmp_path / "plain", "127.0.0.1:9093", {})
    secure = tomllib.loads((tmp_path / "tls" / "config.toml").read_text())
    plain = tomllib.loads((tmp_path / "plain" / "config.toml").read_text())
    assert secure["superlink"] == {
        "default": CONNECTION,
        CONNECTION: {"address": "127.0.0.1:9093", "root-certificates": str(ca)},
    }
    assert plain["superlink"][CONNECTION] == {"address": "127.0.0.1:9093", "insecure": True}


def test_first_json_skips_log_lines() -> None:
    assert first_json('Loading {config}\n{"success": true, "run-id": "7"}\n') == {"success": True, "run-id": "7"}
    with pytest.raises(ValueError, match="no JSON"):
        first_json("nothing here")


def test_report_says_how_the_federation_was_secured() -> None:
    secure = format_report({"status": "complete", "flwr_run_id": "7", "tls": True, "supernode_auth": True})
    insecure = format_report({"status": "incomplete", "flwr_run_id": None, "tls": False, "supernode_auth": False,
                              "reason": "boom", "leftover_pids": [12]})  # fmt: skip
    assert secure == "deployment: complete (flwr run id 7; TLS, registered SuperNodes only)"
    assert insecure.splitlines() == [
        "deployment: incomplete (flwr run id None; plain HTTP (engine.tls=false), no SuperNode auth)",
        "  reason: boom",
        "  WARNING: processes still alive after stopping: [12]",
    ]


def _direction(counted: int, link: int, wire: int) -> dict:
    non_message = {"query": 0, "acks": 0, "pull_requests": 0, "bookkeeping": 0, "other": 0}
    return {
        "superlink": counted, "ledger_wire": wire, "raw_diff_bytes": wire - counted, "raw_diff_pct": 0.0,
        "non_message": non_message, "dedup_bytes": wire - counted, "dedup_objects": 1, "model_traffic": wire,
        "model_diff_bytes": 0, "model_diff_pct": 0.0, "model_counted": counted, "ledger_link": link,
        "link_diff_bytes": counted - link,
    }  # fmt: skip


def test_report_says_which_prediction_the_superlink_count_matched() -> None:
    def counted_line(counted: int) -> str:
        agreement = {"down": _direction(1000, 1000, 1000), "up": _direction(counted, 600, 1100)}
        lines = format_report({"status": "complete", "flwr_run_id": "7", "agreement": agreement}).splitlines()
        return [line for line in lines if "counted" in line][-1].split(" B ", 1)[1]

    assert counted_line(600) == "= ledger link_bytes (objects the SuperLink held were not pushed again)"
    assert counted_line(1100) == "= ledger wire_bytes (identical replies pushed at once: each copy counted)"
    assert counted_line(700) == "vs ledger link_bytes 600 B: +100 B"
