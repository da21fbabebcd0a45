"""Result files are written atomically with the mode a plain ``open()`` gives (0644 under umask 022)."""

import os
import stat

import pandas as pd
import pytest

from fedcomp.core.files import write_json, write_parquet, write_text
from fedcomp.core.rundir import write_run


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_each_writer_gives_0644(tmp_path, umask_022):
    paths = [
        write_text(tmp_path / "a.yaml", "a: 1\n"),
        write_json(tmp_path / "b.json", {"b": 1}),
        write_parquet(tmp_path / "c.parquet", pd.DataFrame({"c": [1]})),
    ]
    assert [mode(p) for p in paths] == [0o644] * 3
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_the_four_run_files_are_0644(tmp_path, umask_022):
    frame = pd.DataFrame({"x": [1, 2]})
    write_run(tmp_path, "seed: 0\n", frame, frame, {"run_id": "r"})
    modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(["config.yaml", "ledger.parquet", "metrics.parquet", "summary.json"], 0o644)


def test_mode_follows_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        assert mode(write_text(tmp_path / "private.txt", "x")) == 0o600
    finally:
        os.umask(previous)
