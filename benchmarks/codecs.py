"""Codec benchmark: speed, size, memory and error of every compressor config.

Every ``conf/compressor/*.yaml`` is built the way a run builds it
(``compose_config`` + ``build_channel``) and timed through its public ``encode`` /
``decode`` on Pythia-14M's state-dict shapes, the MNIST CNN's (a real update) and flat
fp32 vectors; beside it the same work done the way the reference projects do it
(GRACE/FedLab ``torch.topk``, min-max int8 with plain torch ops). See
``benchmarks/README.md`` for what each figure means and the targets.
"""

from __future__ import annotations

import cProfile
import functools
import gc
import io
import math
import os
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_OUT, machine_info, median, rss_peak, timed_window, traced_peak
from fedcomp.compressors.base import Compressor, Tensors
from fedcomp.compressors.build import build_channel
from fedcomp.compressors.chain import Chain
from fedcomp.compressors.topk import TopK
from fedcomp.config import compose_config, load_task, to_container
from fedcomp.core.files import write_json
from fedcomp.core.paths import CONF_DIR
from fedcomp.tasks.partitions import load_partitions

#: Flat-vector sizes of the scaling curve (elements).
SIZES = (1 << 20, 1 << 22, 1 << 24, 1 << 26)
#: Standard deviation of the synthetic Gaussian updates: the ``threshold`` config
#: (|x| >= 1e-3) then keeps ~1.2 % of the entries, close to top-1 %.
UPDATE_STD = 4e-4
#: From this size every output buffer is a fresh mmap (glibc's threshold tops out at
#: 32 MiB): the per-element cost steps up once between 4M and 16M elements.
LARGE_REGIME = 1 << 24
#: rng seeds of the kept-energy check of sampled top-k.
ENERGY_SEEDS = 20
#: Compressors timed on the flat vectors too (the scaling curve): the ones the targets
#: name and their neighbours. Some others (eden, fetchsgd, qsgd) take seconds per call
#: at 64M elements; ``scaling_compressors=None`` runs every config there as well.
SCALING_COMPRESSORS = ("none", "lossless", "quant1", "quant2", "quant4", "quant8", "threshold", "topk",
                       "topk_quant8", "topk_quant8_zstd")

TARGET_TOPK_SPEEDUP = 5.0
TARGET_TOPK_ENERGY = 0.99
TARGET_TOPK_COUNT = 0.01
TARGET_QUANT8_GBPS = 1.0
TARGET_QUANT4_OVER_8 = 1.5
TARGET_SLOPE_MAX = 1.10
TARGET_PEAK_OVER_INPUT = 2.0

#: Diagnostic variants run on the first model: (config, overrides). They separate what
#: a setting costs (block size, exact selection) from what the code costs.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "quant4 [block_size=null]": ("quant4", ("compressor.block_size=null",)),
    "quant4 [block_size=256]": ("quant4", ("compressor.block_size=256",)),
    "quant8 [block_size=64]": ("quant8", ("compressor.block_size=64",)),
    "topk [selection=exact]": ("topk", ("compressor.selection=exact",)),
}


def size_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# ------------------------------------------------------------------ inputs
def gaussian_like(state: Tensors, seed: int = 0, std: float = UPDATE_STD) -> Tensors:
    """An update-like dict with the shapes of ``state``: N(0, (s·std)²) per tensor,
    ``s`` log-uniform in [0.5, 2] per tensor so layers differ in scale as real updates do."""
    rng = np.random.default_rng(seed)
    out: Tensors = {}
    for name, array in state.items():
        scale = np.float32(std * 2.0 ** rng.uniform(-1, 1))
        out[name] = rng.standard_normal(array.shape, dtype=np.float32) * scale
    return out


def flat_vector(n: int, seed: int = 0, std: float = UPDATE_STD) -> Tensors:
    """``{"x": N(0, std²)}`` of ``n`` fp32 elements."""
    x = np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
    x *= np.float32(std)
    return {"x": x}


def model_state(task_name: str) -> Tensors:
    """A task's round-0 state dict as fp32 numpy (seeded, offline)."""
    import torch

    torch.manual_seed(0)
    model = load_task(task_name).build_model()
    return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in model.state_dict().items()}


def mnist_real_update(seed: int = 0) -> Tensors:
    """A real MNIST update: one local epoch on Dirichlet partition 0 of 10, minus the
    round-0 model, as fedcomp's client computes it."""
    import torch

    cfg = to_container(compose_config(["task=mnist"]))
    task = load_task("mnist")
    torch.manual_seed(seed)
    model = task.initial_model()
    before = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    data = load_partitions(task, cfg["partition"], 10, seed)[0]
    task.train(model, data, epochs=1, steps=None, seed=seed)
    return {k: np.subtract(v.detach().numpy(), before[k], dtype=np.float32) for k, v in model.state_dict().items()}


def model_input(name: str, real_mnist_update: bool = True) -> dict[str, Any]:
    """``{"name", "kind", "tensors"}`` for a task's state dict."""
    if name == "mnist" and real_mnist_update:
        return {"name": name, "kind": "real update: one local epoch of SGD on partition 0",
                "tensors": mnist_real_update()}
    return {"name": name, "tensors": gaussian_like(model_state(name)),
            "kind": f"state-dict shapes, Gaussian update (std {UPDATE_STD:g} x 2^U(-1,1) per tensor)"}


def flat_input(n: int) -> dict[str, Any]:
    return {"name": f"flat-{size_label(n)}", "kind": f"flat fp32 N(0, {UPDATE_STD:g}^2)",
            "tensors": flat_vector(n)}


# ------------------------------------------------------------------ compressors
def compressor_names() -> list[str]:
    """Every config in ``conf/compressor/`` (sorted)."""
    return sorted(p.stem for p in (CONF_DIR / "compressor").glob("*.yaml"))


@functools.cache
def build_compressor(name: str, overrides: tuple[str, ...] = ()) -> Compressor:
    """The compressor of ``conf/compressor/<name>.yaml`` (+ overrides), as a run builds it."""
    return build_channel(compose_config([f"compressor={name}", *overrides]).compressor).compressor


def topk_stage(compressor: Compressor) -> TopK | None:
    for stage in compressor.stages if isinstance(compressor, Chain) else [compressor]:
        if isinstance(stage, TopK):
            return stage
    return None


def prepare_input(compressor: Compressor, tensors: Tensors) -> tuple[Tensors | None, str]:
    """The update a compressor sees, or ``(None, reason)`` when it does not apply.

    Freeze stages apply only when their patterns match some (not all) tensor names; the
    frozen tensors' updates are then zero, as in a run (they are never trained).
    """
    try:
        frozen = compressor.frozen_names(list(tensors))
    except ValueError as err:
        return None, f"skipped: {err}"
    if not frozen:
        return tensors, ""
    out = {n: (np.zeros_like(a) if n in frozen else a) for n, a in tensors.items()}
    return out, f"{len(frozen)} frozen tensors (zero update) of {len(tensors)}"


# ------------------------------------------------------------------ error and energy
def sumsq(array: np.ndarray) -> float:
    """Sum of squares in float64, in chunks (float32 dots lose digits on 64M entries)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    total = 0.0
    for start in range(0, flat.size, 1 << 20):
        chunk = flat[start : start + (1 << 20)].astype(np.float64)
        total += float(np.dot(chunk, chunk))
    return total


def relative_error(x: Tensors, y: Tensors) -> float:
    """``||x - y|| / ||x||`` over all tensors of ``x`` (missing ones in ``y`` count as 0)."""
    num = den = 0.0
    for name, a in x.items():
        b = y.get(name)
        den += sumsq(a)
        num += sumsq(a if b is None else np.subtract(a, b, dtype=np.float32))
    return math.sqrt(num / den) if den else 0.0


def exact_topk_energy(x: Tensors, stage: TopK) -> tuple[float, int]:
    """Energy (sum of squares) and count of an exact top-k with ``stage``'s density and
    scope on ``x``, computed here with ``np.partition`` (not with fedcomp's code)."""
    floats = {n: a.reshape(-1) for n, a in x.items() if np.issubdtype(a.dtype, np.floating) and a.size}
    small = {n: a for n, a in floats.items() if a.size < stage.min_numel}
    groups = ([np.concatenate([a for n, a in floats.items() if n not in small])] if stage.scope == "model"
              else [a for n, a in floats.items() if n not in small])
    energy = sum(sumsq(a) for a in small.values())
    kept = sum(a.size for a in small.values())
    for group in groups:
        if not group.size:
            continue
        k = min(group.size, max(1, round((stage.density or 1.0) * group.size)))
        sq = np.square(group, dtype=np.float32)
        top = np.partition(sq, sq.size - k)[sq.size - k :]
        energy += float(top.astype(np.float64).sum())
        kept += int(np.count_nonzero(top))
    return energy, kept


def kept_energy(x: Tensors, decoded: Tensors) -> tuple[float, int]:
    """Energy of ``x`` at the positions ``decoded`` kept (non-zero), and their count."""
    energy, kept = 0.0, 0
    for name, a in x.items():
        b = decoded.get(name)
        if b is None:
            continue
        mask = b.reshape(-1) != 0
        energy += sumsq(a.reshape(-1)[mask])
        kept += int(np.count_nonzero(mask))
    return energy, kept


# ------------------------------------------------------------------ references
class TorchTopK:
    """Top-k as GRACE/FedLab do it: ``torch.topk(|x|, k, sorted=False)`` per tensor,
    values gathered, int64 indices; decode with ``zeros().scatter_``.

    ``k = max(1, int(numel * density))`` (GRACE). FedLab passes ``sorted=False`` (used
    here: the faster variant); GRACE's default ``sorted=True`` is slower still.
    """

    name = "ref:torch.topk"

    def __init__(self, density: float = 0.01) -> None:
        self.density = density

    def encode(self, tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = {}
        for name, t in tensors.items():
            flat = t.reshape(-1)
            k = max(1, int(flat.numel() * self.density))
            _, idx = torch.topk(flat.abs(), k, sorted=False)
            out[name] = (flat[idx], idx, t.shape)
        return out

    def decode(self, encoded: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = {}
        for name, (values, idx, shape) in encoded.items():
            dense = torch.zeros(math.prod(shape), dtype=values.dtype)
            dense.scatter_(0, idx, values)
            out[name] = dense.view(shape)
        return out

    @staticmethod
    def payload_bytes(encoded: dict[str, Any]) -> int:
        return int(sum(v.numel() * v.element_size() + i.numel() * i.element_size()
                       for v, i, _ in encoded.values()))


class TorchInt8:
    """Per-tensor min-max 8-bit quantization with plain torch ops:
    ``q = round((x - min) / scale).to(uint8)``, ``scale = (max - min) / 255``;
    decode ``q.float() * scale + min``."""

    name = "ref:torch.int8"

    def encode(self, tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = {}
        for name, t in tensors.items():
            lo, hi = t.min(), t.max()
            scale = (hi - lo) / 255
            q = (torch.zeros_like(t, dtype=torch.uint8) if float(scale) == 0.0
                 else ((t - lo) / scale).round_().to(torch.uint8))
            out[name] = (q, scale, lo)
        return out

    def decode(self, encoded: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {name: q.to(torch.float32) * scale + lo for name, (q, scale, lo) in encoded.items()}

    @staticmethod
    def payload_bytes(encoded: dict[str, Any]) -> int:
        return int(sum(q.numel() + 8 for q, _, _ in encoded.values()))


# ------------------------------------------------------------------ one row
def _row_base(inp: dict[str, Any]) -> dict[str, Any]:
    tensors = inp["tensors"]
    return {"input": inp["name"], "numel": int(sum(a.size for a in tensors.values())),
            "dense_bytes": int(sum(a.size * 4 for a in tensors.values())), "num_tensors": len(tensors)}


def _timings(row: dict[str, Any], encode: Callable[[], Any], decode: Callable[[], Any], repeats: int) -> None:
    """Encode/decode medians (after the warm-up call the caller made), GB/s, ns/element."""
    for op, fn in (("encode", encode), ("decode", decode)):
        times, faults, windows = timed_window(fn, repeats)
        s = median(times)
        row.update({f"{op}_s": s, f"{op}_s_min": min(times), f"{op}_s_all": times,
                    f"{op}_gbps": row["dense_bytes"] / s / 1e9,
                    f"{op}_ns_per_element": s / row["numel"] * 1e9,
                    f"{op}_page_faults": faults, f"{op}_windows": windows})


def bench_fedcomp(label: str, compressor: Compressor, inp: dict[str, Any], repeats: int,
                  memory: bool = True, kind: str = "fedcomp", seed: int = 1) -> dict[str, Any]:
    """Time, size, memory and error of one fedcomp compressor on one input."""
    row = {**_row_base(inp), "compressor": label, "kind": kind, "transform": compressor.describe(),
           "lossy": bool(compressor.lossy)}
    tensors, note = prepare_input(compressor, inp["tensors"])
    if tensors is None:
        return {**row, "status": "skipped", "note": note}

    def encode() -> Any:
        return compressor.encode(tensors, np.random.default_rng(seed))

    encoded = encode()  # also the warm-up
    decoded = compressor.decode(encoded)
    _timings(row, encode, lambda: compressor.decode(encoded), repeats)
    row.update(status="ok", note=note, repeats=repeats, payload_bytes=int(encoded.payload_bytes),
               compression_ratio=row["dense_bytes"] / max(1, encoded.payload_bytes),
               rel_error=relative_error(tensors, decoded))
    stage = topk_stage(compressor)
    if stage is not None and stage.density is not None:
        exact_e, k = exact_topk_energy(tensors, stage)
        got_e, kept = kept_energy(tensors, decoded)
        row.update(kept=kept, k_exact=k, kept_over_k=kept / max(1, k),
                   kept_energy_ratio=got_e / exact_e if exact_e else None)
    del decoded
    if memory:
        peak, again = traced_peak(encode)
        row["encode_peak_bytes"], row["encode_peak_over_input"] = peak, peak / row["dense_bytes"]
        peak, _ = traced_peak(lambda: compressor.decode(again))
        row["decode_peak_bytes"], row["decode_peak_over_input"] = peak, peak / row["dense_bytes"]
        del again
        row["encode_rss_peak_bytes"], _ = rss_peak(encode)
    return row


def bench_reference(ref: Any, inp: dict[str, Any], repeats: int, memory: bool = True,
                    threads: int | None = None) -> dict[str, Any]:
    """The same for a torch reference (``torch.from_numpy``: no copy, outside the timing)."""
    import torch

    label = ref.name + (f" ({threads} thread{'s' * (threads > 1)})" if threads else "")
    row = {**_row_base(inp), "compressor": label, "kind": "reference",
           "transform": (ref.__doc__ or "").strip().split("\n")[0], "lossy": True}
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t_in = {n: torch.from_numpy(a) for n, a in inp["tensors"].items()}
        encoded = ref.encode(t_in)
        decoded = {n: t.numpy() for n, t in ref.decode(encoded).items()}
        _timings(row, lambda: ref.encode(t_in), lambda: ref.decode(encoded), repeats)
        payload = ref.payload_bytes(encoded)
        row.update(status="ok", note="", repeats=repeats, torch_threads=torch.get_num_threads(),
                   payload_bytes=payload, compression_ratio=row["dense_bytes"] / max(1, payload),
                   rel_error=relative_error(inp["tensors"], decoded))
        if isinstance(ref, TorchTopK):
            _, kept = kept_energy(inp["tensors"], decoded)
            row.update(kept=kept, k_exact=kept, kept_over_k=1.0, kept_energy_ratio=1.0)
        if memory:
            row["encode_rss_peak_bytes"], _ = rss_peak(lambda: ref.encode(t_in))
    finally:
        torch.set_num_threads(previous)
    return row


def topk_energy_over_seeds(inp: dict[str, Any], label: str, compressor: Compressor,
                           seeds: int = ENERGY_SEEDS) -> dict[str, Any]:
    """Kept energy and count of a top-k compressor vs exact top-k over ``seeds`` rng seeds."""
    stage = topk_stage(compressor)
    tensors = inp["tensors"]
    exact_e, k = exact_topk_energy(tensors, stage)
    ratios, counts = [], []
    for seed in range(seeds):
        decoded = compressor.decode(compressor.encode(tensors, np.random.default_rng(100 + seed)))
        got_e, kept = kept_energy(tensors, decoded)
        ratios.append(got_e / exact_e)
        counts.append(kept / k)
    return {"input": inp["name"], "compressor": label, "selection": stage.selection, "seeds": seeds,
            "k_exact": k, "energy_ratio_min": min(ratios), "energy_ratio_mean": float(np.mean(ratios)),
            "energy_ratio_max": max(ratios), "kept_over_k_min": min(counts),
            "kept_over_k_max": max(counts), "energy_ratios": ratios}


def trim_profile(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    keep = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")]
    lines = lines[keep[0]:] if keep else lines
    return [ln.replace(str(Path(sys.executable).parent.parent), "<venv>") for ln in lines]


def profile_encode(compressor: Compressor, tensors: Tensors, top: int = 10) -> list[str]:
    """cProfile (internal time) of one encode: where a compressor spends its time."""
    compressor.encode(tensors, np.random.default_rng(1))
    prof = cProfile.Profile()
    prof.runcall(compressor.encode, tensors, np.random.default_rng(1))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return trim_profile(buf.getvalue())


# ------------------------------------------------------------------ summaries
def find(rows: list[dict], **match: Any) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()) and row.get("status") == "ok":
            return row
    return None


def compare_to_references(rows: list[dict]) -> list[dict]:
    """fedcomp/reference time ratios on every input (``< 1``: fedcomp is faster)."""
    pairs = [("topk", "ref:torch.topk"), ("topk", "ref:torch.topk (1 thread)"),
             ("quant8", "ref:torch.int8"), ("quant8", "ref:torch.int8 (1 thread)")]
    out = []
    for inp in dict.fromkeys(r["input"] for r in rows):
        for ours, ref in pairs:
            a, b = find(rows, input=inp, compressor=ours), find(rows, input=inp, compressor=ref)
            if a and b:
                out.append({"input": inp, "fedcomp": ours, "reference": ref,
                            "encode_ratio": a["encode_s"] / b["encode_s"],
                            "decode_ratio": a["decode_s"] / b["decode_s"],
                            "encode_speedup": b["encode_s"] / a["encode_s"],
                            "payload_ratio": a["payload_bytes"] / b["payload_bytes"]})
    return out


def scaling(rows: list[dict], sizes: Sequence[int]) -> list[dict]:
    """ns/element per flat size and the slope of log(time) vs log(size), per compressor."""
    labels = [f"flat-{size_label(n)}" for n in sizes]
    out = []
    for comp in dict.fromkeys(r["compressor"] for r in rows):
        found = [r for r in (find(rows, input=label, compressor=comp) for label in labels) if r]
        if len(found) < 2:
            continue
        n = np.log([r["numel"] for r in found])
        entry: dict[str, Any] = {"compressor": comp, "sizes": [r["numel"] for r in found]}
        for op in ("encode", "decode"):
            t = np.log([r[f"{op}_s"] for r in found])
            entry[f"{op}_ns_per_element"] = [r[f"{op}_ns_per_element"] for r in found]
            entry[f"{op}_slope"] = float(np.polyfit(n, t, 1)[0])
            big = [i for i, r in enumerate(found) if r["numel"] >= LARGE_REGIME]
            if len(big) >= 2:  # only buffers the allocator maps fresh (see README)
                entry[f"{op}_slope_large"] = float(np.polyfit(n[big], t[big], 1)[0])
            entry[f"{op}_page_faults"] = [r[f"{op}_page_faults"] for r in found]
        out.append(entry)
    return out


def evaluate_targets(result: dict[str, Any], main: str) -> list[dict]:
    """The issues' codec targets, checked on the main input and the flat scaling curve."""
    rows = result["rows"]
    targets: list[dict] = []

    def add(name: str, value: float, threshold: float, ok: bool, detail: str) -> None:
        targets.append({"target": name, "value": value, "threshold": threshold, "met": ok, "detail": detail})

    topk, ref = find(rows, input=main, compressor="topk"), find(rows, input=main, compressor="ref:torch.topk")
    if topk and ref:
        speed = ref["encode_s"] / topk["encode_s"]
        add("top-k 1% encode >= 5x faster than torch.topk", speed, TARGET_TOPK_SPEEDUP,
            speed >= TARGET_TOPK_SPEEDUP, f"{main}: fedcomp {topk['encode_s'] * 1e3:.1f} ms vs torch.topk "
            f"{ref['encode_s'] * 1e3:.1f} ms ({ref.get('torch_threads')} torch threads)")
    energy = next((e for e in result["energy"] if e["input"] == main and e["compressor"] == "topk"), None)
    if energy:
        add("sampled top-k keeps >= 99% of exact top-k energy (min over seeds)", energy["energy_ratio_min"],
            TARGET_TOPK_ENERGY, energy["energy_ratio_min"] >= TARGET_TOPK_ENERGY,
            f"{energy['seeds']} seeds: min {energy['energy_ratio_min']:.4f}, mean {energy['energy_ratio_mean']:.4f}")
        worst = max(abs(energy["kept_over_k_min"] - 1), abs(energy["kept_over_k_max"] - 1))
        add("sampled top-k keeps k entries within 1% (worst seed)", worst, TARGET_TOPK_COUNT,
            worst <= TARGET_TOPK_COUNT,
            f"kept/k {energy['kept_over_k_min']:.4f}..{energy['kept_over_k_max']:.4f} over {energy['seeds']} seeds")
    q8, q4 = find(rows, input=main, compressor="quant8"), find(rows, input=main, compressor="quant4")
    if q8:
        for op in ("encode", "decode"):
            v = q8[f"{op}_gbps"]
            add(f"8-bit {op} >= 1 GB/s", v, TARGET_QUANT8_GBPS, v >= TARGET_QUANT8_GBPS,
                f"{main}: {q8[f'{op}_s'] * 1e3:.1f} ms for {q8['dense_bytes'] / 1e6:.1f} MB")
    if q8 and q4:
        for op in ("encode", "decode"):
            v = q4[f"{op}_s"] / q8[f"{op}_s"]
            add(f"4-bit {op} within 1.5x of 8-bit", v, TARGET_QUANT4_OVER_8, v <= TARGET_QUANT4_OVER_8,
                f"quant4 (block 64) {q4[f'{op}_s'] * 1e3:.1f} ms vs quant8 (per tensor) {q8[f'{op}_s'] * 1e3:.1f} ms")
    slopes = [s for s in result["scaling"] if not s["compressor"].startswith("ref:") and s["compressor"] != "none"]
    for key, label in (("slope", "all sizes"), ("slope_large", f"sizes >= {size_label(LARGE_REGIME)}")):
        have = [s for s in slopes if f"encode_{key}" in s]
        if have:
            worst = max(have, key=lambda s: max(s[f"encode_{key}"], s[f"decode_{key}"]))
            v = max(worst[f"encode_{key}"], worst[f"decode_{key}"])
            add(f"time linear in size: max slope of log t vs log n, {label}", v, TARGET_SLOPE_MAX,
                v <= TARGET_SLOPE_MAX, f"worst: {worst['compressor']} (encode {worst[f'encode_{key}']:.3f}, "
                f"decode {worst[f'decode_{key}']:.3f})")
    peaks = [r for r in rows if r["input"] == main and r["kind"] == "fedcomp" and "encode_peak_over_input" in r]
    if peaks:
        worst = max(peaks, key=lambda r: r["encode_peak_over_input"])
        v = worst["encode_peak_over_input"]
        over = [r["compressor"] for r in peaks if r["encode_peak_over_input"] > TARGET_PEAK_OVER_INPUT]
        add("encode allocates <= ~2x its input (tracemalloc peak / input bytes)", v, TARGET_PEAK_OVER_INPUT,
            v <= TARGET_PEAK_OVER_INPUT, f"worst: {worst['compressor']}" + (f"; over: {', '.join(over)}" if over else ""))
    return targets


# ------------------------------------------------------------------ the benchmark
def _bench_input(inp: dict[str, Any], names: Sequence[str], reps: int, memory: bool, references: bool,
                 main: bool, energy_seeds: int, result: dict[str, Any]) -> None:
    import torch

    for name in names:
        result["rows"].append(bench_fedcomp(name, build_compressor(name), inp, reps, memory))
    if references:
        result["rows"].append(bench_reference(TorchTopK(0.01), inp, reps, memory))
        result["rows"].append(bench_reference(TorchInt8(), inp, reps, memory))
        if main and torch.get_num_threads() > 1:
            result["rows"].append(bench_reference(TorchTopK(0.01), inp, reps, memory, threads=1))
            result["rows"].append(bench_reference(TorchInt8(), inp, reps, memory, threads=1))
    if not main:
        return
    for label, (base, overrides) in VARIANTS.items():
        if base in names:
            result["rows"].append(bench_fedcomp(label, build_compressor(base, overrides), inp, reps, memory,
                                                kind="variant"))
    if energy_seeds and "topk" in names:
        result["energy"].append(topk_energy_over_seeds(inp, "topk", build_compressor("topk"), energy_seeds))
    for name in ("topk", "quant8", "quant4"):
        if name in names:
            tensors, _ = prepare_input(build_compressor(name), inp["tensors"])
            result["profiles"][f"{inp['name']}:{name}"] = profile_encode(build_compressor(name), tensors)


def run_codecs(sizes: Sequence[int] = SIZES, models: Sequence[str] = ("pythia14m", "mnist"),
               repeats: int = 5, repeats_large: int = 5, large: int = 1 << 25,
               compressors: Sequence[str] | None = None,
               scaling_compressors: Sequence[str] | None = SCALING_COMPRESSORS,
               references: bool = True, memory: bool = True,
               energy_seeds: int = ENERGY_SEEDS, real_mnist_update: bool = True,
               out_dir: str | Path | None = DEFAULT_OUT, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the codec benchmark; write ``codecs.json`` into ``out_dir`` (when set).

    Parameters
    ----------
    sizes
        Flat fp32 vector sizes (elements) of the scaling curve.
    models
        Task state dicts (``pythia14m``, ``mnist``, ...); the variants, the top-k energy
        check and the profiles run on every model.
    repeats, repeats_large, large
        Timed calls (median reported, after one warm-up); inputs with more than
        ``large`` elements use ``repeats_large``.
    compressors
        Config names (default: every ``conf/compressor/*.yaml``).
    scaling_compressors
        Of those, the ones also run on the flat vectors (``None``: all of them).
    references, memory
        Also run the torch references; also measure peak memory.
    """
    started = time.perf_counter()
    names = list(compressors) if compressors is not None else compressor_names()
    machine = machine_info()
    echo(f"codecs: {len(names)} compressors x {len(models) + len(sizes)} inputs, repeats {repeats}; "
         f"load {machine['loadavg_1m_5m_15m']}")
    result: dict[str, Any] = {
        "benchmark": "codecs", "command": "python -m benchmarks codecs", "machine": machine,
        "settings": {"sizes": list(sizes), "models": list(models), "repeats": repeats,
                     "repeats_large": repeats_large, "large_threshold": large, "compressors": names,
                     "scaling_compressors": list(scaling_compressors or names),
                     "update_std": UPDATE_STD, "energy_seeds": energy_seeds},
        "inputs": [], "rows": [], "energy": [], "profiles": {},
    }
    builders = [functools.partial(model_input, m, real_mnist_update) for m in models]
    builders += [functools.partial(flat_input, n) for n in sizes]
    for build in builders:  # one input at a time: the 64M vector alone is 256 MiB
        inp = build()
        base = _row_base(inp)
        result["inputs"].append({"name": inp["name"], "kind": inp["kind"], **base})
        t0 = time.perf_counter()
        main = inp["name"] in models
        these = names if main or scaling_compressors is None else [n for n in names if n in scaling_compressors]
        _bench_input(inp, these, repeats_large if base["numel"] > large else repeats, memory, references,
                     main, energy_seeds, result)
        echo(f"  {inp['name']:>12}: {base['numel']:>11,} elements, {time.perf_counter() - t0:6.1f} s")
        del inp
        gc.collect()
    result["comparisons"] = compare_to_references(result["rows"])
    result["scaling"] = scaling(result["rows"], sizes)
    result["targets"] = evaluate_targets(result, models[0] if models else "")
    result["elapsed_s"] = time.perf_counter() - started
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    if out_dir is not None:
        write_json(Path(out_dir) / "codecs.json", result)
    return result
