"""Every published compressor of issue 11 runs end to end on digits (slow)."""

from pathlib import Path

import pytest

from fedcomp.engines.launch import execute
from tests.compressors.test_published_configs import PUBLISHED
from tests.helpers import load_run, run_config

SMALL = ("task=digits", "partition=iid", "engine=inprocess", "federation.num_clients=3",
         "federation.fraction_fit=1.0", "federation.num_rounds=2")
#: The casts carry exactly half the dense bytes; every other method less than half.
HALF = {"fp16", "bf16"}


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_compressor_runs_on_digits(tmp_path: Path, name: str):
    summary = execute(run_config(tmp_path, *SMALL, f"compressor={name}"))
    ledger, metrics, _ = load_run(tmp_path)
    assert summary["num_failures"] == 0
    assert (ledger["status"] == "ok").all()
    up = summary["bytes"]["up"]
    assert up["dense_bytes"] == summary["formula"]["cohort_up_total"]
    if name in HALF:  # 16 bits per entry, plus the packed layout's small header
        assert up["dense_bytes"] // 2 <= up["payload_bytes"] < 0.51 * up["dense_bytes"]
    else:
        assert up["payload_bytes"] < 0.5 * up["dense_bytes"]
    accuracy = metrics[(metrics.scope == "central") & (metrics.metric == "accuracy")]
    assert sorted(accuracy["round"]) == [0, 1, 2]
