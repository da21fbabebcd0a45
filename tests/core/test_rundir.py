"""A run is complete only when its files read back and match the checksums summary.json records."""

import json

import pandas as pd
import pytest

from fedcomp.core.rundir import (
    CHECKED_FILES,
    LEDGER_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    RunError,
    check_run,
    is_complete,
    load_run,
    write_run,
)
from tests.helpers import write_synthetic_run


@pytest.fixture
def run_dir(tmp_path):
    return write_synthetic_run(tmp_path / "run")


def test_summary_records_the_checksum_size_and_rows_of_each_file(run_dir):
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    assert sorted(summary["files"]) == sorted(CHECKED_FILES)
    ledger = pd.read_parquet(run_dir / LEDGER_FILE)
    assert summary["files"][LEDGER_FILE]["rows"] == len(ledger) > 0
    assert summary["files"][LEDGER_FILE]["bytes"] == (run_dir / LEDGER_FILE).stat().st_size
    assert check_run(run_dir) is None and is_complete(run_dir)


def test_a_truncated_ledger_is_not_complete(run_dir):
    data = (run_dir / LEDGER_FILE).read_bytes()
    (run_dir / LEDGER_FILE).write_bytes(data[: len(data) // 2])
    assert "ledger.parquet has" in check_run(run_dir) and "truncated" in check_run(run_dir)
    assert not is_complete(run_dir)


def test_a_file_changed_in_place_is_not_complete(run_dir):
    frame = pd.read_parquet(run_dir / METRICS_FILE)
    frame.loc[0, "value"] = 0.999
    frame.to_parquet(run_dir / METRICS_FILE, index=False)  # may keep the size: the SHA-256 catches it
    assert "metrics.parquet" in check_run(run_dir)


def test_garbage_or_foreign_summaries_are_not_complete(run_dir):
    (run_dir / SUMMARY_FILE).write_text("{not json")
    assert check_run(run_dir).startswith("unreadable summary.json")
    (run_dir / SUMMARY_FILE).write_text(json.dumps({"run_id": "x"}))
    assert check_run(run_dir) == "summary.json records no checksums of config.yaml, ledger.parquet, metrics.parquet"
    with pytest.raises(RunError):
        load_run(run_dir)


def test_write_run_replaces_a_stale_record(tmp_path):
    frame = pd.DataFrame({"run_id": ["r"], "round": [1], "scope": ["central"], "metric": ["m"], "value": [1.0]})
    write_run(tmp_path, "a: 1\n", frame, frame, {"run_id": "one"})
    first = json.loads((tmp_path / SUMMARY_FILE).read_text())["files"]
    write_run(tmp_path, "a: 2\n", frame, frame, {"run_id": "two"})
    second = json.loads((tmp_path / SUMMARY_FILE).read_text())["files"]
    assert first["config.yaml"]["sha256"] != second["config.yaml"]["sha256"]
