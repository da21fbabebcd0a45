"""Benchmarks: codec speed and memory, and the cost of fedcomp's simulation layer.

``python -m fedcomp.bench codecs``
    Every compressor in ``conf/compressor/*.yaml`` (built with ``compose_config`` +
    ``build_compression``) on Pythia-14M's state dict, the MNIST CNN's, and flat fp32
    vectors of 1M/4M/16M/64M elements: encode and decode time (median after a
    warm-up), GB/s of dense fp32, payload bytes, peak extra memory (``tracemalloc``:
    numpy reports its buffers to it), relative error, and for top-k the energy kept
    against an exact top-k. In the same run the same work done the way the reference
    projects do it (GRACE/FedLab ``torch.topk`` over ``|x|`` with int64 indices;
    per-tensor min-max int8 with plain torch ops), and the fedcomp/reference ratios.
``python -m fedcomp.bench overhead``
    The same MNIST federation (identity transform) run by fedcomp (full ledger) and by
    a plain Flower ``FedAvg`` ServerApp/ClientApp written here, each in a fresh
    process: wall time per round with Ray's start excluded, peak memory of the whole
    process tree (driver + Ray), the fixed per-run start-up cost, what it costs a
    12-run sweep, and the same runs attached to one long-lived Ray cluster. Also the
    cost of ``wire_bytes`` per message (with a profile).
``python -m fedcomp.bench all``
    Both, then ``results/bench/bench.md``.

Outputs: ``results/bench/codecs.json``, ``results/bench/overhead.json`` (machine info
under ``machine``) and ``results/bench/bench.md`` (the Markdown printed at the end).
See ``benchmarks/README.md`` for what each figure means and the targets.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import datetime as _dt
import gc
import json
import math
import os
import platform
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Tensors = dict[str, np.ndarray]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "results" / "bench"
CONF_DIR = ROOT / "conf"

#: Flat-vector sizes of the scaling curve (elements).
SIZES = (1 << 20, 1 << 22, 1 << 24, 1 << 26)
#: Standard deviation of the synthetic Gaussian updates. The ``threshold`` config
#: (|x| >= 1e-3) then keeps ~1.2 % of the entries, close to top-1 %.
UPDATE_STD = 4e-4
#: Seeds for the kept-energy check of sampled top-k.
ENERGY_SEEDS = 5

# Target thresholds (benchmarks/README.md).
TARGET_TOPK_SPEEDUP = 5.0
TARGET_TOPK_ENERGY = 0.99
TARGET_QUANT8_GBPS = 1.0
TARGET_QUANT4_OVER_8 = 1.5
TARGET_SLOPE_MAX = 1.10
TARGET_PEAK_OVER_INPUT = 2.0
TARGET_OVERHEAD_RATIO = 1.05


# ======================================================================================
# Machine information and small helpers
# ======================================================================================
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, date, load average, git commit."""
    import flwr
    import torch

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "flwr": flwr.__version__,
        "loadavg_1m_5m_15m": list(os.getloadavg()),
    }
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:  # pragma: no cover - ray ships with flwr[simulation]
        info["ray"] = None
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["mem_total_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()
        info["git_commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection pass here costs ~0.4 s with torch loaded
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return out


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so RSS deltas start from a floor."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def traced_peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes ``fn`` allocates above what was allocated before (``tracemalloc``).

    numpy reports its data buffers to tracemalloc, so this is exact for numpy code
    (temporaries and the returned arrays); torch allocations are invisible to it.
    """
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return int(peak), result


def rss_peak(fn: Callable[[], Any], interval: float = 0.0005) -> tuple[int, Any]:
    """Approximate peak RSS growth while ``fn`` runs (a sampling thread; torch too)."""
    _malloc_trim()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
        peak[0] = max(peak[0], _rss_bytes())
    finally:
        done.set()
        thread.join()
    return int(peak[0] - base), result


def _sumsq(array: np.ndarray) -> float:
    """Sum of squares in float64, in chunks (float32 dots lose digits on 64M entries)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    total = 0.0
    step = 1 << 20
    for start in range(0, flat.size, step):
        chunk = flat[start : start + step].astype(np.float64)
        total += float(np.dot(chunk, chunk))
    return total


def relative_error(x: Tensors, y: Tensors) -> float:
    """``||x - y|| / ||x||`` over all tensors of ``x`` (missing ones in ``y`` count as 0)."""
    num = 0.0
    den = 0.0
    for name, a in x.items():
        b = y.get(name)
        den += _sumsq(a)
        num += _sumsq(a if b is None else np.subtract(a, b, dtype=np.float32))
    return math.sqrt(num / den) if den else 0.0


def _fmt(value: Any, spec: str = ".3g", none: str = "–") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


def _size_label(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# ======================================================================================
# Inputs
# ======================================================================================
def gaussian_like(state: Tensors, seed: int = 0, std: float = UPDATE_STD) -> Tensors:
    """An update-like dict with the shapes of ``state``: N(0, (s·std)²) per tensor.

    ``s`` is drawn per tensor log-uniformly in [0.5, 2] so layers differ in scale as
    real updates do.
    """
    rng = np.random.default_rng(seed)
    out: Tensors = {}
    for name, array in state.items():
        scale = np.float32(std * 2.0 ** rng.uniform(-1, 1))
        out[name] = rng.standard_normal(array.shape, dtype=np.float32) * scale
    return out


def flat_vector(n: int, seed: int = 0, std: float = UPDATE_STD) -> Tensors:
    """``{"x": N(0, std²)}`` of ``n`` fp32 elements."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)
    x *= np.float32(std)
    return {"x": x}


def model_state(task_name: str) -> Tensors:
    """A task's round-0 state dict as fp32 numpy (seeded, offline)."""
    import torch

    from fedcomp.config import load_task

    task = load_task(task_name)
    torch.manual_seed(0)
    model = task.build_model()
    return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in model.state_dict().items()}


def mnist_real_update(seed: int = 0) -> Tensors:
    """A real MNIST update: one local epoch on partition 0 (Dirichlet, 10 clients) minus
    the round-0 model, as fedcomp's client computes it."""
    import torch

    from fedcomp.config import compose_config, load_task, to_container
    from fedcomp.data import load_partitions

    cfg = to_container(compose_config(["task=mnist"]))
    task = load_task("mnist")
    torch.manual_seed(seed)
    model = task.initial_model()
    before = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    data = load_partitions(task, cfg["partition"], 10, seed)[0]
    task.train(model, data, epochs=1, steps=None, seed=seed)
    after = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return {k: np.subtract(after[k], before[k], dtype=np.float32) for k in before}


def build_inputs(
    models: Sequence[str], sizes: Sequence[int], real_mnist_update: bool = True
) -> list[dict[str, Any]]:
    """The benchmark inputs: ``{"name", "kind", "tensors"}`` dicts (lazily built vectors
    are built here too; the 64M vector alone is 256 MiB)."""
    inputs = []
    for name in models:
        if name == "mnist" and real_mnist_update:
            tensors = mnist_real_update()
            kind = "real update: one local epoch of SGD on partition 0"
        else:
            tensors = gaussian_like(model_state(name))
            kind = f"state-dict shapes, Gaussian update (std {UPDATE_STD:g} x 2^U(-1,1) per tensor)"
        inputs.append({"name": name, "kind": kind, "tensors": tensors})
    for n in sizes:
        inputs.append(
            {"name": f"flat-{_size_label(n)}", "kind": f"flat fp32 N(0, {UPDATE_STD:g}^2)",
             "tensors": flat_vector(n)}
        )
    return inputs


# ======================================================================================
# Transforms
# ======================================================================================
def compressor_names() -> list[str]:
    """Every config in ``conf/compressor/`` (sorted)."""
    return sorted(p.stem for p in (CONF_DIR / "compressor").glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def build_compressor(name: str):
    """``Compression`` for ``conf/compressor/<name>.yaml`` via compose_config + factory."""
    from fedcomp.config import compose_config
    from fedcomp.transforms.factory import build_compression

    return build_compression(compose_config([f"compressor={name}"]).compressor)


def _stages(transform: Any) -> list[Any]:
    return list(getattr(transform, "stages", [transform]))


def _topk_stage(transform: Any) -> Any | None:
    from fedcomp.transforms.topk import TopK

    for stage in _stages(transform):
        if isinstance(stage, TopK):
            return stage
    return None


def exact_topk_energy(x: Tensors, stage: Any) -> tuple[float, int]:
    """Energy (sum of squares) of an exact top-k with ``stage``'s density and scope, and k."""
    floats = {n: a.reshape(-1) for n, a in x.items() if np.issubdtype(a.dtype, np.floating)}
    density = stage.density
    if stage.scope == "model":
        sizes = {n: a.size for n, a in floats.items() if a.size >= stage.min_numel}
        total = sum(sizes.values())
        k = min(total, max(1, round(density * total)))
        sq = np.concatenate([np.square(floats[n], dtype=np.float32) for n in sizes])
        energy = float(np.partition(sq, sq.size - k)[sq.size - k :].astype(np.float64).sum())
        rest = sum(_sumsq(a) for n, a in floats.items() if n not in sizes)
        return energy + rest, k + sum(a.size for n, a in floats.items() if n not in sizes)
    energy, kept = 0.0, 0
    for a in floats.values():
        n = a.size
        k = n if n < stage.min_numel else min(n, max(1, round(density * n)))
        if n == 0:
            continue
        sq = np.square(a, dtype=np.float32)
        energy += float(np.partition(sq, n - k)[n - k :].astype(np.float64).sum()) if k < n else _sumsq(a)
        kept += k
    return energy, kept


def kept_energy(x: Tensors, decoded: Tensors) -> tuple[float, int]:
    """Energy of ``x`` at the positions ``decoded`` kept (non-zero), and their count."""
    energy, kept = 0.0, 0
    for name, a in x.items():
        b = decoded.get(name)
        if b is None:
            continue
        mask = b.reshape(-1) != 0
        energy += _sumsq(a.reshape(-1)[mask])
        kept += int(np.count_nonzero(mask))
    return energy, kept


def prepare_input(transform: Any, tensors: Tensors) -> tuple[Tensors | None, str]:
    """The update a transform sees, or ``(None, reason)`` when it does not apply.

    Freeze stages apply only when their patterns match some (not all) tensor names;
    the frozen tensors' updates are then zero, as in a real run (not trained).
    """
    try:
        frozen = transform.frozen_names(list(tensors))
    except ValueError as err:
        return None, f"skipped: {err}"
    if not frozen:
        return tensors, ""
    out = {n: (np.zeros_like(a) if n in frozen else a) for n, a in tensors.items()}
    return out, f"{len(frozen)} frozen tensors (zero update) of {len(tensors)}"


# ======================================================================================
# Reference implementations (GRACE / FedLab style, plain torch)
# ======================================================================================
class TorchTopK:
    """Top-k as GRACE/FedLab do it: ``torch.topk(|x|, k, sorted=False)`` per tensor,
    values gathered, int64 indices; decode with ``zeros().scatter_``.

    ``k = max(1, int(numel * density))`` (GRACE). FedLab passes ``sorted=False`` (used
    here: the faster variant); GRACE's default ``sorted=True`` is slower still.
    """

    name = "ref:torch.topk"
    lossy = True

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
    lossy = True

    def encode(self, tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = {}
        for name, t in tensors.items():
            lo, hi = t.min(), t.max()
            scale = (hi - lo) / 255
            if float(scale) == 0.0:
                q = torch.zeros_like(t, dtype=torch.uint8)
            else:
                q = ((t - lo) / scale).round_().to(torch.uint8)
            out[name] = (q, scale, lo)
        return out

    def decode(self, encoded: dict[str, Any]) -> dict[str, Any]:
        import torch

        return {name: q.to(torch.float32) * scale + lo for name, (q, scale, lo) in encoded.items()}

    @staticmethod
    def payload_bytes(encoded: dict[str, Any]) -> int:
        return int(sum(q.numel() + 8 for q, _, _ in encoded.values()))


# ======================================================================================
# Codec benchmark
# ======================================================================================
def _row_base(inp: dict[str, Any], tensors: Tensors) -> dict[str, Any]:
    numel = int(sum(a.size for a in tensors.values()))
    return {
        "input": inp["name"],
        "numel": numel,
        "dense_bytes": int(sum(a.size * 4 for a in tensors.values())),
        "num_tensors": len(tensors),
    }


def bench_fedcomp(
    name: str, inp: dict[str, Any], repeats: int, memory: bool = True, seed: int = 1
) -> dict[str, Any]:
    """Time, size, memory and error of one fedcomp compressor on one input."""
    compression = build_compressor(name)
    transform = compression.transform
    row = {**_row_base(inp, inp["tensors"]), "compressor": name, "kind": "fedcomp",
           "transform": transform.describe(), "lossy": bool(transform.lossy)}
    tensors, note = prepare_input(transform, inp["tensors"])
    if tensors is None:
        return {**row, "status": "skipped", "note": note}

    def encode() -> Any:
        return transform.encode(tensors, np.random.default_rng(seed))

    encoded = encode()  # also the warm-up
    enc_times = time_calls(encode, repeats, warmup=0)
    decoded = transform.decode(encoded)
    dec_times = time_calls(lambda: transform.decode(encoded), repeats, warmup=0)
    dense = row["dense_bytes"]
    enc_s, dec_s = _median(enc_times), _median(dec_times)
    row.update(
        status="ok", note=note, repeats=repeats,
        encode_s=enc_s, encode_s_min=min(enc_times), encode_s_all=enc_times,
        decode_s=dec_s, decode_s_min=min(dec_times), decode_s_all=dec_times,
        encode_gbps=dense / enc_s / 1e9, decode_gbps=dense / dec_s / 1e9,
        encode_ns_per_element=enc_s / row["numel"] * 1e9,
        decode_ns_per_element=dec_s / row["numel"] * 1e9,
        payload_bytes=int(encoded.payload_bytes),
        compression_ratio=dense / max(1, encoded.payload_bytes),
        rel_error=relative_error(tensors, decoded),
    )
    stage = _topk_stage(transform)
    if stage is not None and stage.density is not None:
        exact_e, k = exact_topk_energy(tensors, stage)
        got_e, kept = kept_energy(tensors, decoded)
        row.update(kept=kept, k_exact=k, kept_over_k=kept / max(1, k),
                   kept_energy_ratio=got_e / exact_e if exact_e else None,
                   kept_energy_of_total=got_e / max(1e-300, sum(_sumsq(a) for a in tensors.values())))
    elif stage is not None:
        _, kept = kept_energy(tensors, decoded)
        row.update(kept=kept, kept_fraction=kept / row["numel"])
    del decoded
    if memory:
        peak, enc2 = traced_peak(encode)
        row["encode_peak_bytes"] = peak
        row["encode_peak_over_input"] = peak / dense
        peak, _ = traced_peak(lambda: transform.decode(enc2))
        row["decode_peak_bytes"] = peak
        row["decode_peak_over_input"] = peak / dense
        del enc2
        row["encode_rss_peak_bytes"], _ = rss_peak(encode)
    return row


def bench_reference(ref: Any, inp: dict[str, Any], repeats: int, memory: bool = True,
                    threads: int | None = None) -> dict[str, Any]:
    """The same for a torch reference (``torch.from_numpy``: no copy, outside the timing)."""
    import torch

    tensors = inp["tensors"]
    label = ref.name + (f" ({threads} thread{'s' * (threads > 1)})" if threads else "")
    row = {**_row_base(inp, tensors), "compressor": label, "kind": "reference",
           "transform": (ref.__doc__ or "").strip().split("\n")[0], "lossy": True}
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        t_in = {n: torch.from_numpy(a) for n, a in tensors.items()}
        encoded = ref.encode(t_in)
        enc_times = time_calls(lambda: ref.encode(t_in), repeats, warmup=0)
        decoded = ref.decode(encoded)
        dec_times = time_calls(lambda: ref.decode(encoded), repeats, warmup=0)
        dense = row["dense_bytes"]
        enc_s, dec_s = _median(enc_times), _median(dec_times)
        decoded_np = {n: t.numpy() for n, t in decoded.items()}
        row.update(
            status="ok", note="", repeats=repeats, torch_threads=torch.get_num_threads(),
            encode_s=enc_s, encode_s_min=min(enc_times), encode_s_all=enc_times,
            decode_s=dec_s, decode_s_min=min(dec_times), decode_s_all=dec_times,
            encode_gbps=dense / enc_s / 1e9, decode_gbps=dense / dec_s / 1e9,
            encode_ns_per_element=enc_s / row["numel"] * 1e9,
            decode_ns_per_element=dec_s / row["numel"] * 1e9,
            payload_bytes=ref.payload_bytes(encoded),
            compression_ratio=dense / max(1, ref.payload_bytes(encoded)),
            rel_error=relative_error(tensors, decoded_np),
        )
        if isinstance(ref, TorchTopK):
            got_e, kept = kept_energy(tensors, decoded_np)
            row.update(kept=kept, k_exact=kept, kept_over_k=1.0, kept_energy_ratio=1.0 if got_e else None)
        del decoded, decoded_np
        if memory:
            row["encode_rss_peak_bytes"], _ = rss_peak(lambda: ref.encode(t_in))
    finally:
        torch.set_num_threads(previous)
    return row


def topk_energy_over_seeds(inp: dict[str, Any], name: str = "topk", seeds: int = ENERGY_SEEDS) -> dict[str, Any]:
    """Kept energy of sampled top-k vs exact top-k over several rng seeds."""
    transform = build_compressor(name).transform
    stage = _topk_stage(transform)
    tensors = inp["tensors"]
    exact_e, k = exact_topk_energy(tensors, stage)
    ratios, counts = [], []
    for seed in range(seeds):
        decoded = transform.decode(transform.encode(tensors, np.random.default_rng(100 + seed)))
        got_e, kept = kept_energy(tensors, decoded)
        ratios.append(got_e / exact_e)
        counts.append(kept / k)
    return {"input": inp["name"], "compressor": name, "selection": stage.selection,
            "seeds": seeds, "k_exact": k, "energy_ratio_min": min(ratios),
            "energy_ratio_mean": float(np.mean(ratios)), "energy_ratio_max": max(ratios),
            "kept_over_k_min": min(counts), "kept_over_k_max": max(counts), "energy_ratios": ratios}


def _find(rows: list[dict], **match: Any) -> dict | None:
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
            a, b = _find(rows, input=inp, compressor=ours), _find(rows, input=inp, compressor=ref)
            if a is None or b is None:
                continue
            out.append({
                "input": inp, "fedcomp": ours, "reference": ref,
                "encode_ratio": a["encode_s"] / b["encode_s"],
                "decode_ratio": a["decode_s"] / b["decode_s"],
                "encode_speedup": b["encode_s"] / a["encode_s"],
                "decode_speedup": b["decode_s"] / a["decode_s"],
                "payload_ratio": a["payload_bytes"] / b["payload_bytes"],
                "rel_error_fedcomp": a.get("rel_error"), "rel_error_reference": b.get("rel_error"),
            })
    return out


def scaling(rows: list[dict], sizes: Sequence[int]) -> list[dict]:
    """ns/element per flat size and the slope of log(time) vs log(size), per compressor."""
    labels = [f"flat-{_size_label(n)}" for n in sizes]
    out = []
    for comp in dict.fromkeys(r["compressor"] for r in rows):
        found = [_find(rows, input=label, compressor=comp) for label in labels]
        points = [(r["numel"], r["encode_s"], r["decode_s"]) for r in found if r is not None]
        if len(points) < 2:
            continue
        n = np.log([p[0] for p in points])
        entry = {"compressor": comp, "sizes": [p[0] for p in points]}
        for i, op in ((1, "encode"), (2, "decode")):
            t = [p[i] for p in points]
            entry[f"{op}_ns_per_element"] = [ti / p[0] * 1e9 for ti, p in zip(t, points)]
            entry[f"{op}_slope"] = float(np.polyfit(n, np.log(t), 1)[0])
            if len(points) >= 3:  # the upper sizes, where fixed costs no longer matter
                entry[f"{op}_slope_upper"] = float(np.polyfit(n[-3:], np.log(t[-3:]), 1)[0])
        out.append(entry)
    return out


def evaluate_codec_targets(result: dict[str, Any], main_input: str = "pythia14m") -> list[dict]:
    """The issue's targets, checked on the 14M input and the flat scaling curve."""
    rows = result["rows"]
    targets: list[dict] = []

    def add(name: str, value: float | None, threshold: float, ok: bool | None, detail: str) -> None:
        targets.append({"target": name, "value": value, "threshold": threshold,
                        "met": ok, "detail": detail})

    topk = _find(rows, input=main_input, compressor="topk")
    ref = _find(rows, input=main_input, compressor="ref:torch.topk")
    if topk and ref:
        speed = ref["encode_s"] / topk["encode_s"]
        add("top-k 1% encode >= 5x faster than torch.topk", speed, TARGET_TOPK_SPEEDUP,
            speed >= TARGET_TOPK_SPEEDUP,
            f"{main_input}: fedcomp {topk['encode_s'] * 1e3:.1f} ms vs torch.topk "
            f"{ref['encode_s'] * 1e3:.1f} ms ({ref.get('torch_threads')} torch threads)")
    energy = next((e for e in result.get("energy", []) if e["input"] == main_input), None)
    if energy:
        add("sampled top-k keeps >= 99% of exact top-k energy (min over seeds)",
            energy["energy_ratio_min"], TARGET_TOPK_ENERGY,
            energy["energy_ratio_min"] >= TARGET_TOPK_ENERGY,
            f"{energy['seeds']} seeds: min {energy['energy_ratio_min']:.4f}, mean "
            f"{energy['energy_ratio_mean']:.4f}; kept/k {energy['kept_over_k_min']:.3f}.."
            f"{energy['kept_over_k_max']:.3f}")
    q8 = _find(rows, input=main_input, compressor="quant8")
    if q8:
        for op in ("encode", "decode"):
            v = q8[f"{op}_gbps"]
            add(f"8-bit {op} >= 1 GB/s", v, TARGET_QUANT8_GBPS, v >= TARGET_QUANT8_GBPS,
                f"{main_input}: {q8[f'{op}_s'] * 1e3:.1f} ms for {q8['dense_bytes'] / 1e6:.1f} MB")
    q4 = _find(rows, input=main_input, compressor="quant4")
    if q8 and q4:
        for op in ("encode", "decode"):
            v = q4[f"{op}_s"] / q8[f"{op}_s"]
            add(f"4-bit {op} within 1.5x of 8-bit", v, TARGET_QUANT4_OVER_8, v <= TARGET_QUANT4_OVER_8,
                f"quant4 (block 64) {q4[f'{op}_s'] * 1e3:.1f} ms vs quant8 (per tensor) "
                f"{q8[f'{op}_s'] * 1e3:.1f} ms")
    slopes = [s for s in result.get("scaling", []) if not s["compressor"].startswith("ref:")]
    if slopes:
        worst = max(slopes, key=lambda s: max(s["encode_slope"], s["decode_slope"]))
        v = max(worst["encode_slope"], worst["decode_slope"])
        add("time linear in size (max fitted slope of log t vs log n)", v, TARGET_SLOPE_MAX,
            v <= TARGET_SLOPE_MAX, f"worst: {worst['compressor']} (encode {worst['encode_slope']:.3f}, "
            f"decode {worst['decode_slope']:.3f}) over {len(worst['sizes'])} sizes")
    peaks = [r for r in rows if r["input"] == main_input and r["kind"] == "fedcomp"
             and r.get("encode_peak_over_input") is not None]
    if peaks:
        worst = max(peaks, key=lambda r: r["encode_peak_over_input"])
        v = worst["encode_peak_over_input"]
        over = [r["compressor"] for r in peaks if r["encode_peak_over_input"] > TARGET_PEAK_OVER_INPUT]
        add("encode allocates <= ~2x its input (tracemalloc peak / input bytes)", v,
            TARGET_PEAK_OVER_INPUT, v <= TARGET_PEAK_OVER_INPUT,
            f"worst: {worst['compressor']}" + (f"; over: {', '.join(over)}" if over else ""))
    return targets


def run_codecs(
    sizes: Sequence[int] = SIZES,
    models: Sequence[str] = ("pythia14m", "mnist"),
    repeats: int = 5,
    repeats_large: int = 5,
    large: int = 1 << 25,
    compressors: Sequence[str] | None = None,
    references: bool = True,
    memory: bool = True,
    energy_seeds: int = ENERGY_SEEDS,
    real_mnist_update: bool = True,
    out_dir: str | Path | None = DEFAULT_OUT,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the codec benchmark; write ``codecs.json`` into ``out_dir`` (when set).

    Parameters
    ----------
    sizes
        Flat fp32 vector sizes (elements) of the scaling curve.
    models
        Task state dicts to benchmark (``pythia14m``, ``mnist``, ...).
    repeats, repeats_large, large
        Timed repetitions (median reported, after one warm-up); inputs with more than
        ``large`` elements use ``repeats_large``.
    compressors
        Config names (default: every ``conf/compressor/*.yaml``).
    references
        Also run the torch references (GRACE/FedLab top-k, min-max int8).
    memory
        Measure peak memory (an extra encode/decode under tracemalloc).
    """
    import torch

    started = time.perf_counter()
    names = list(compressors) if compressors is not None else compressor_names()
    machine = machine_info()
    echo(f"codecs: {len(names)} compressors x {len(models) + len(sizes)} inputs, "
         f"repeats {repeats} (>{_size_label(large)}: {repeats_large}); load {machine['loadavg_1m_5m_15m']}")
    result: dict[str, Any] = {
        "benchmark": "codecs",
        "command": "python -m fedcomp.bench codecs",
        "machine": machine,
        "settings": {"sizes": list(sizes), "models": list(models), "repeats": repeats,
                     "repeats_large": repeats_large, "large_threshold": large,
                     "compressors": names, "update_std": UPDATE_STD, "energy_seeds": energy_seeds,
                     "timing": "median of `repeats` calls after one warm-up call",
                     "memory": "tracemalloc peak above the baseline during one call (numpy buffers "
                               "incl. the returned payload); encode_rss_peak_bytes: sampled RSS growth"},
        "inputs": [], "rows": [], "energy": [],
    }
    inputs = build_inputs(models, [], real_mnist_update)
    pending_sizes = list(sizes)
    while inputs or pending_sizes:
        if not inputs:  # build flat vectors one at a time (the 64M one is 256 MiB)
            inputs = build_inputs([], [pending_sizes.pop(0)])
        inp = inputs.pop(0)
        base = _row_base(inp, inp["tensors"])
        result["inputs"].append({"name": inp["name"], "kind": inp["kind"], **base})
        reps = repeats_large if base["numel"] > large else repeats
        t0 = time.perf_counter()
        for name in names:
            row = bench_fedcomp(name, inp, reps, memory=memory)
            result["rows"].append(row)
        if references:
            result["rows"].append(bench_reference(TorchTopK(0.01), inp, reps, memory))
            result["rows"].append(bench_reference(TorchInt8(), inp, reps, memory))
            if inp["name"] in models and torch.get_num_threads() > 1:
                result["rows"].append(bench_reference(TorchTopK(0.01), inp, reps, memory, threads=1))
                result["rows"].append(bench_reference(TorchInt8(), inp, reps, memory, threads=1))
        if energy_seeds and "topk" in names and inp["name"] in models:
            result["energy"].append(topk_energy_over_seeds(inp, "topk", energy_seeds))
        echo(f"  {inp['name']:>12}: {base['numel']:>11,} elements, {time.perf_counter() - t0:6.1f} s")
        del inp
        gc.collect()
    result["comparisons"] = compare_to_references(result["rows"])
    result["scaling"] = scaling(result["rows"], sizes)
    result["targets"] = evaluate_codec_targets(result, models[0] if models else "")
    result["elapsed_s"] = time.perf_counter() - started
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    if out_dir is not None:
        _write_json(Path(out_dir) / "codecs.json", result)
    return result


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
