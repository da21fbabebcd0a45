"""The benchmarks (``python -m benchmarks``) through their Python API, with no timing asserts.

They check that every compressor config runs through the codec benchmark, that the
overhead benchmark's per-round bookkeeping is right on hand-made timestamps and on a
small real run of both apps, and that benchmarking leaves fedcomp exactly as it was
(nothing patched).
"""

from __future__ import annotations

import json
import pkgutil
import sys

import numpy as np
import pytest

import fedcomp
from benchmarks import codecs, overhead
from benchmarks.__main__ import main, write_markdown
from fedcomp.compressors.topk import TopK


def fedcomp_namespaces() -> dict[str, dict[str, int]]:
    """``id`` of every attribute of every imported fedcomp module (and of its classes)."""
    out = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("fedcomp") or module is None:
            continue
        attrs = {}
        for key, value in vars(module).items():
            attrs[key] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                attrs.update({f"{key}.{k}": id(v) for k, v in vars(value).items()})
        out[name] = attrs
    return out


@pytest.fixture()
def untouched_fedcomp():
    """Fails the test if anything in an imported fedcomp module was replaced meanwhile."""
    for info in pkgutil.walk_packages(fedcomp.__path__, "fedcomp."):
        if info.name.rsplit(".", 1)[-1] in ("run", "deploy", "report", "formula", "pretrain"):
            continue  # commands: importing them parses nothing, but they are not used here
        __import__(info.name)
    before = fedcomp_namespaces()
    yield
    after = fedcomp_namespaces()
    changed = [f"{m}.{k}" for m, attrs in before.items() for k, v in attrs.items() if after[m].get(k) != v]
    assert not changed, f"the benchmark changed fedcomp: {changed[:10]}"


def test_codec_benchmark_runs_every_compressor_config(tmp_path, untouched_fedcomp):
    result = codecs.run_codecs(sizes=(10_000,), models=("mnist",), repeats=1, energy_seeds=2,
                               real_mnist_update=False, out_dir=tmp_path, echo=lambda _: None)
    data = json.loads((tmp_path / "codecs.json").read_text())
    assert len(data["rows"]) == len(result["rows"])
    assert {"cpu_model", "cpu_count", "torch", "flwr", "numpy", "date_utc"} <= set(data["machine"])
    fedcomp_rows = [r for r in data["rows"] if r["kind"] == "fedcomp"]
    assert sorted({r["compressor"] for r in fedcomp_rows}) == codecs.compressor_names()
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert {r["input"] for r in ok} == {"mnist", "flat-10k"}
    for row in ok:
        assert row["payload_bytes"] > 0 and row["encode_s"] > 0 and row["decode_s"] > 0, row["compressor"]
        if not row["lossy"]:
            assert row["rel_error"] == 0.0, row["compressor"]
    skipped = [r for r in data["rows"] if r["status"] == "skipped"]
    assert skipped and all(r["note"].startswith("skipped:") for r in skipped)
    assert any(r["compressor"] == "freeze_convs" and r["input"] == "mnist" for r in ok)
    assert {"ref:torch.topk", "ref:torch.int8"} <= {r["compressor"] for r in ok if r["kind"] == "reference"}
    assert {r["compressor"] for r in ok if r["kind"] == "variant"} == set(codecs.VARIANTS)
    (energy,) = data["energy"]
    assert energy["seeds"] == 2 and energy["energy_ratio_min"] == pytest.approx(1.0)
    assert {t["target"] for t in data["targets"]}
    text = write_markdown(tmp_path)
    assert "| topk |" in text and "Codec targets" in text and (tmp_path / "bench.md").is_file()


def test_exact_topk_energy_by_hand():
    x = {"a": np.array([3.0, -4.0, 1.0, 0.5], dtype=np.float32), "b": np.array([-2.0, 0.1], dtype=np.float32)}
    per_tensor = TopK(density=0.5)  # a: k=2 -> 9 + 16; b: k=1 -> 4
    assert codecs.exact_topk_energy(x, per_tensor) == (pytest.approx(29.0), 3)
    model = TopK(density=0.5, scope="model")  # 6 entries, k=3 -> 16 + 9 + 4
    assert codecs.exact_topk_energy(x, model) == (pytest.approx(29.0), 3)
    small = TopK(density=0.5, min_numel=3)  # b is sent whole: 4 + 0.01
    assert codecs.exact_topk_energy(x, small) == (pytest.approx(29.01), 4)
    assert codecs.kept_energy(x, {"a": np.array([0, -4, 1, 0], dtype=np.float32)}) == (pytest.approx(17.0), 2)


def test_derive_run_from_round_ends_by_hand():
    ends = {1: (12.0, 5.0), 2: (12.5, 5.2), 3: (13.5, 5.6)}  # (wall, driver CPU) at each round end
    run = overhead.derive_run(10.0, 14.0, ends, 3)
    assert run["steady_round_s"] == pytest.approx(0.75)  # (13.5 - 12.0) / 2
    assert run["round_s"] == pytest.approx([0.5, 1.0])
    assert run["to_first_round_end_s"] == pytest.approx(2.0)
    assert run["after_last_round_s"] == pytest.approx(0.5)
    assert run["fixed_s"] == pytest.approx(4.0 - 3 * 0.75)
    assert run["cpu_per_round_driver_s"] == pytest.approx(0.3)
    assert "error" in overhead.derive_run(10.0, 14.0, {1: (12.0, 5.0)}, 3)


def _child(mode: str, steady: float, foreign: float, peak: int) -> dict:
    return {"mode": mode, "engine": "inprocess", "foreign_cpu_share": foreign,
            "peak_pss_tree_bytes": peak, "peak_rss_driver_bytes": peak,
            "runs": [{"steady_round_s": steady, "round_s": [steady], "cpu_per_round_driver_s": steady}]}


def test_summary_uses_clean_pairs_and_gives_ratios():
    children = [_child("fedcomp", 0.9, 0.5, 100), _child("flower", 0.3, 0.5, 100),  # noisy pair
                _child("fedcomp", 0.21, 0.0, 105), _child("flower", 0.20, 0.0, 100)]
    s = overhead.summarize(children, "inprocess")
    assert s["pairs"] == 2 and s["clean_pairs"] == 1
    assert s["steady_round_s_ratio"] == pytest.approx(1.05)
    assert s["peak_pss_tree_bytes_ratio"] == pytest.approx(1.05)
    (steady, memory) = overhead.targets({"inprocess": s}, [])
    assert steady["met"] and memory["met"]
    (sweep,) = overhead.targets({}, [{"engine": "inprocess", "runs": 12, "ratio": 3.5, "sweep_s": 35.0,
                                      "single_s": 10.0}])
    assert not sweep["met"] and sweep["value"] == 3.5


def test_overhead_child_times_both_apps_in_process(tmp_path, untouched_fedcomp):
    children = []
    for mode in overhead.MODES:
        out = tmp_path / f"{mode}.json"
        overhead.overhead_child(mode, "inprocess", rounds=3, clients=4, fraction=0.5, seed=0, runs=1,
                                out=str(out), task="digits")
        children.append(json.loads(out.read_text()))
    for child in children:
        (run,) = child["runs"]
        assert "error" not in run, run
        assert len(run["round_s"]) == 2 and run["steady_round_s"] > 0
        assert child["peak_pss_tree_bytes"] > 0 and child["peak_rss_driver_bytes"] > 0
    summary = overhead.summarize(children, "inprocess")
    assert summary["steady_round_s_ratio"] > 0 and summary["peak_pss_tree_bytes_ratio"] > 0


def test_command_line_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "{codecs,overhead,all}" in capsys.readouterr().out
