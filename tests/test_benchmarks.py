"""Smoke test of the benchmark's Python API: a tiny codec run writes complete JSON.

No timing asserts: this only checks that every compressor config runs through the
benchmark and that the result carries the fields the README table is built from.
"""

import json

from benchmarks import bench


def test_codec_bench_smoke(tmp_path):
    result = bench.run_codecs(
        sizes=(10_000,), models=("mnist",), repeats=1, energy_seeds=2,
        real_mnist_update=False, out_dir=tmp_path, echo=lambda _: None,
    )
    data = json.loads((tmp_path / "codecs.json").read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"], default=bench._json_default))
    for key in ("cpu_model", "cpu_count", "torch", "flwr", "numpy", "date_utc"):
        assert key in data["machine"]
    names = bench.compressor_names()
    assert {r["compressor"] for r in data["rows"] if r["kind"] == "fedcomp"} == set(names)
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert {r["input"] for r in ok} == {"mnist", "flat-10k"}
    for row in ok:
        for key in ("encode_s", "decode_s", "encode_gbps", "decode_gbps", "payload_bytes",
                    "compression_ratio", "rel_error", "encode_s_all"):
            assert key in row, (row["compressor"], key)
        if row["kind"] != "reference":
            assert "encode_peak_bytes" in row and "encode_peak_over_input" in row
        if not row["lossy"]:
            assert row["rel_error"] == 0.0, row["compressor"]
    # Freeze configs run where their patterns match and are skipped with a reason elsewhere
    skipped = [r for r in data["rows"] if r["status"] == "skipped"]
    assert all(r["note"].startswith("skipped:") for r in skipped)
    assert any(r["compressor"] == "freeze_convs" and r["input"] == "mnist" for r in ok)
    assert any(r["compressor"] == "freeze_convs" and r["input"] == "flat-10k" for r in skipped)
    refs = {r["compressor"] for r in ok if r["kind"] == "reference"}
    assert {"ref:torch.topk", "ref:torch.int8"} <= refs
    assert {c["fedcomp"] for c in data["comparisons"]} == {"topk", "quant8"}
    assert any(r["kind"] == "prototype" for r in ok)
    assert data["energy"] and all("energy_ratio_min" in e for e in data["energy"])
    assert {t["target"] for t in data["targets"]}
    text = bench.write_markdown(tmp_path, echo=lambda _: None)
    assert "| topk |" in text and (tmp_path / "bench.md").exists()
