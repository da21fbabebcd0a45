"""Benchmarks: codec speed and memory, and the cost of fedcomp's simulation layer.

``python -m benchmarks.bench codecs``
    Every compressor in ``conf/compressor/*.yaml`` (built with ``compose_config`` +
    ``build_channel``) on Pythia-14M's state dict, the MNIST CNN's, and flat fp32
    vectors of 1M/4M/16M/64M elements: encode and decode time (median after a
    warm-up), GB/s of dense fp32, payload bytes, peak extra memory (``tracemalloc``:
    numpy reports its buffers to it), relative error, and for top-k the energy kept
    against an exact top-k. In the same run the same work done the way the reference
    projects do it (GRACE/FedLab ``torch.topk`` over ``|x|`` with int64 indices;
    per-tensor min-max int8 with plain torch ops), and the fedcomp/reference ratios.
``python -m benchmarks.bench overhead``
    The same MNIST federation (identity transform) run by fedcomp (full ledger) and by
    a plain Flower ``FedAvg`` ServerApp/ClientApp written here, each in a fresh
    process: wall time per round with Ray's start excluded, peak memory of the whole
    process tree (driver + Ray), the fixed per-run start-up cost, what it costs a
    12-run sweep, and the same runs attached to one long-lived Ray cluster. Also the
    cost of ``wire_bytes`` per message (with a profile).
``python -m benchmarks.bench all``
    Both, then ``results/bench/bench.md``.

Outputs: ``results/bench/codecs.json``, ``results/bench/overhead.json`` (machine info
under ``machine``) and ``results/bench/bench.md`` (the Markdown printed at the end).
See ``benchmarks/README.md`` for what each figure means and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import datetime as _dt
import functools
import gc
import io
import json
import math
import os
import platform
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
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
#: Sizes from which every output buffer is a fresh mmap (glibc's threshold tops out at
#: 32 MiB): the per-element cost steps up once between 4M and 16M elements.
LARGE_REGIME = 1 << 24
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
#: An overhead process pair counts as clean when other processes used at most this
#: share of the machine's CPUs while it ran.
FOREIGN_MAX = 0.15


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
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
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


#: A window of timed calls whose slowest call exceeds its fastest by more than this is
#: re-measured (another process probably took the CPU), up to ``WINDOWS`` windows.
SPREAD = 1.3
WINDOWS = 3


def timed_with_faults(fn: Callable[[], Any], repeats: int,
                      windows: int = WINDOWS) -> tuple[list[float], float, int]:
    """:func:`time_calls` (no extra warm-up) plus minor page faults per call.

    Page faults are first touches of freshly mapped memory, which the kernel zeroes:
    the per-element cost step between buffers the allocator reuses and fresh ``mmap``
    ones. When a window's max/min spread exceeds :data:`SPREAD` (and calls take > 1 ms)
    the window is re-measured, up to ``windows`` times; the window with the lowest
    median is returned with the number of windows taken.
    """
    import resource

    best: list[float] | None = None
    faults = 0.0
    taken = 0
    for taken in range(1, windows + 1):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = time_calls(fn, repeats, warmup=0)
        got = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / max(1, repeats)
        if best is None or _median(times) < _median(best):
            best, faults = times, got
        if max(times) <= SPREAD * min(times) or min(times) < 1e-3:
            break
    assert best is not None
    return best, faults, taken


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
    from fedcomp.tasks.partitions import load_partitions

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


@functools.cache
def build_compressor(name: str, overrides: tuple[str, ...] = ()):
    """``Channel`` for ``conf/compressor/<name>.yaml`` via compose_config + factory."""
    from fedcomp.compressors.build import build_channel
    from fedcomp.config import compose_config

    return build_channel(compose_config([f"compressor={name}", *overrides]).compressor)


def bracket_topk_class() -> type:
    """Prototype (not in fedcomp.compressors): sampled top-k that still keeps *exactly* k.

    The sample gives a *lower* bracket for the cut (the quantile at ``density + z·σ``,
    σ the sampling error of a quantile estimate, z = 4), the same single ``|x| >= cut``
    pass collects the ~1.1·k candidates, and ``np.argpartition`` over the candidates
    picks the k largest. Same pass over the tensor as ``selection="sampled"``, plus
    O(k) work; falls back to the exact path if the bracket misses (p ~ 3e-5).
    """
    from fedcomp.compressors.topk import TopK

    class BracketTopK(TopK):
        z = 4.0

        def _select_tensor(self, flat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            n = flat.size
            if self.density is None or self.selection == "exact" or n <= self.sample_size:
                return super()._select_tensor(flat, rng)
            k = self._k(n)
            mags = np.abs(flat)
            s = self.sample_size
            sample = mags[rng.integers(0, n, size=s)]
            d = k / n
            d_lo = min(1.0, d + self.z * math.sqrt(d * (1 - d) / s))
            keep = min(s, max(1, math.ceil(d_lo * s)))
            cut = float(np.partition(sample, s - keep)[s - keep])
            if not math.isfinite(cut):
                return super()._select_tensor(flat, rng)
            cand = np.flatnonzero(mags >= cut) if cut > 0 else np.flatnonzero(mags > 0)
            if cand.size < k:
                if cut <= 0:  # fewer than k non-zeros: send them all (zeros never are)
                    return self._apply_threshold(flat, cand)
                return self._apply_threshold(flat, self._positions_exact(mags, k))
            if cand.size > k:
                top = np.argpartition(mags[cand], cand.size - k)[cand.size - k :]
                top.sort()
                cand = cand[top]
            return self._apply_threshold(flat, cand)

    return BracketTopK


#: Diagnostic variants run on the main input: (base config, overrides) or a prototype.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "quant4 [block_size=null]": ("quant4", ("compressor.block_size=null",)),
    "quant4 [block_size=256]": ("quant4", ("compressor.block_size=256",)),
    "quant8 [block_size=64]": ("quant8", ("compressor.block_size=64",)),
    "topk [selection=exact]": ("topk", ("compressor.selection=exact",)),
    "topk [prototype: bracket, exact k]": ("topk", ()),
}


def build_variant(label: str) -> Any:
    """The transform of a :data:`VARIANTS` entry."""
    base, overrides = VARIANTS[label]
    if "prototype: bracket" in label:
        stage = build_compressor(base, overrides).compressor
        cls = bracket_topk_class()
        return cls(density=stage.density, threshold=stage.threshold, scope=stage.scope,
                   selection=stage.selection, index_encoding=stage.index_encoding,
                   min_numel=stage.min_numel, sample_size=stage.sample_size)
    return build_compressor(base, overrides).compressor


def _stages(transform: Any) -> list[Any]:
    return list(getattr(transform, "stages", [transform]))


def _topk_stage(transform: Any) -> Any | None:
    from fedcomp.compressors.topk import TopK

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
    name: str, inp: dict[str, Any], repeats: int, memory: bool = True, seed: int = 1,
    transform: Any = None, kind: str = "fedcomp",
) -> dict[str, Any]:
    """Time, size, memory and error of one fedcomp compressor on one input."""
    if transform is None:
        transform = build_compressor(name).compressor
    row = {**_row_base(inp, inp["tensors"]), "compressor": name, "kind": kind,
           "transform": transform.describe(), "lossy": bool(transform.lossy)}
    tensors, note = prepare_input(transform, inp["tensors"])
    if tensors is None:
        return {**row, "status": "skipped", "note": note}

    def encode() -> Any:
        return transform.encode(tensors, np.random.default_rng(seed))

    encoded = encode()  # also the warm-up
    enc_times, enc_faults, enc_windows = timed_with_faults(encode, repeats)
    decoded = transform.decode(encoded)
    dec_times, dec_faults, dec_windows = timed_with_faults(lambda: transform.decode(encoded), repeats)
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
        encode_page_faults=enc_faults, decode_page_faults=dec_faults,
        encode_windows=enc_windows, decode_windows=dec_windows,
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
        enc_times, enc_faults, enc_windows = timed_with_faults(lambda: ref.encode(t_in), repeats)
        decoded = ref.decode(encoded)
        dec_times, dec_faults, dec_windows = timed_with_faults(lambda: ref.decode(encoded), repeats)
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
            encode_page_faults=enc_faults, decode_page_faults=dec_faults,
            encode_windows=enc_windows, decode_windows=dec_windows,
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


def topk_energy_over_seeds(inp: dict[str, Any], name: str = "topk", seeds: int = ENERGY_SEEDS,
                           transform: Any = None) -> dict[str, Any]:
    """Kept energy of sampled top-k vs exact top-k over several rng seeds."""
    if transform is None:
        transform = build_compressor(name).compressor
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


def profile_encode(name: str, inp: dict[str, Any], top: int = 10) -> list[str]:
    """cProfile (internal time) of one encode: where a compressor spends its time."""
    transform = build_compressor(name).compressor
    tensors, _ = prepare_input(transform, inp["tensors"])
    if tensors is None:
        return []
    transform.encode(tensors, np.random.default_rng(1))
    prof = cProfile.Profile()
    prof.enable()
    transform.encode(tensors, np.random.default_rng(1))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return _trim_profile(buf.getvalue())


def aggregation_prototype(state: Tensors, clients: int = 5, repeats: int = 3) -> dict[str, Any]:
    """Server-side FedAvg of ``clients`` dense updates: fedcomp's current expression
    (``np.sum([w * u[n] for ...], axis=0)`` in ``fedcomp/fl/strategy.py``) vs a streaming
    in-place weighted accumulation (prototype). Time and tracemalloc peak."""
    updates = [(float(100 + i), gaussian_like(state, seed=10 + i)) for i in range(clients)]
    names = list(state)
    total = sum(w for w, _ in updates)

    def current() -> Tensors:
        return {n: np.sum([w * u[n] for w, u in updates], axis=0, dtype=np.float32) / np.float32(total)
                for n in names}

    def streaming() -> Tensors:
        out = {}
        for n in names:
            acc = np.multiply(updates[0][1][n], np.float32(updates[0][0] / total))
            tmp = np.empty_like(acc)
            for w, u in updates[1:]:
                np.multiply(u[n], np.float32(w / total), out=tmp)
                acc += tmp
            out[n] = acc
        return out

    a, b = current(), streaming()
    diff = max(float(np.max(np.abs(a[n] - b[n]))) for n in names)
    out: dict[str, Any] = {"clients": clients, "dense_bytes": int(sum(v.nbytes for v in state.values())),
                           "max_abs_diff": diff}
    for label, fn in (("current", current), ("streaming", streaming)):
        times = time_calls(fn, repeats)
        peak, _ = traced_peak(fn)
        out[label] = {"s": _median(times), "peak_bytes": peak}
    return out


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
            big = [i for i, p in enumerate(points) if p[0] >= LARGE_REGIME]
            if len(big) >= 2:  # only buffers the allocator maps fresh (see README)
                entry[f"{op}_slope_large"] = float(
                    np.polyfit(n[big], np.log([t[i] for i in big]), 1)[0])
            entry[f"{op}_page_faults"] = [r[f"{op}_page_faults"] for r in found
                                          if r is not None and f"{op}_page_faults" in r]
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
    energy = next((e for e in result.get("energy", [])
                   if e["input"] == main_input and e["compressor"] == "topk"), None)
    proto = next((e for e in result.get("energy", [])
                  if e["input"] == main_input and "prototype" in e["compressor"]), None)
    if energy:
        add("sampled top-k keeps >= 99% of exact top-k energy (min over seeds)",
            energy["energy_ratio_min"], TARGET_TOPK_ENERGY,
            energy["energy_ratio_min"] >= TARGET_TOPK_ENERGY,
            f"{energy['seeds']} seeds: min {energy['energy_ratio_min']:.4f}, mean "
            f"{energy['energy_ratio_mean']:.4f}; kept/k {energy['kept_over_k_min']:.3f}.."
            f"{energy['kept_over_k_max']:.3f}" + (
                f"; bracket prototype: min {proto['energy_ratio_min']:.4f}" if proto else ""))
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
    slopes = [s for s in result.get("scaling", [])
              if not s["compressor"].startswith("ref:") and s["compressor"] != "none"]
    if slopes:
        worst = max(slopes, key=lambda s: max(s["encode_slope"], s["decode_slope"]))
        v = max(worst["encode_slope"], worst["decode_slope"])
        add("time linear in size: max slope of log t vs log n, all sizes", v, TARGET_SLOPE_MAX,
            v <= TARGET_SLOPE_MAX, f"worst: {worst['compressor']} (encode {worst['encode_slope']:.3f}, "
            f"decode {worst['decode_slope']:.3f}) over {len(worst['sizes'])} sizes")
        large = [s for s in slopes if "encode_slope_large" in s]
        if large:
            worst = max(large, key=lambda s: max(s["encode_slope_large"], s["decode_slope_large"]))
            v = max(worst["encode_slope_large"], worst["decode_slope_large"])
            add(f"time linear in size: max slope, sizes >= {_size_label(LARGE_REGIME)}", v,
                TARGET_SLOPE_MAX, v <= TARGET_SLOPE_MAX,
                f"worst: {worst['compressor']} (encode {worst['encode_slope_large']:.3f}, decode "
                f"{worst['decode_slope_large']:.3f})")
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
    variants: bool = True,
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
    variants
        Also run the diagnostic :data:`VARIANTS` (other block sizes, exact top-k, the
        bracketed top-k prototype) on the first model.
    """
    import torch

    started = time.perf_counter()
    names = list(compressors) if compressors is not None else compressor_names()
    machine = machine_info()
    echo(f"codecs: {len(names)} compressors x {len(models) + len(sizes)} inputs, "
         f"repeats {repeats} (>{_size_label(large)}: {repeats_large}); load {machine['loadavg_1m_5m_15m']}")
    result: dict[str, Any] = {
        "benchmark": "codecs",
        "command": "python -m benchmarks.bench codecs",
        "machine": machine,
        "settings": {"sizes": list(sizes), "models": list(models), "repeats": repeats,
                     "repeats_large": repeats_large, "large_threshold": large,
                     "compressors": names, "update_std": UPDATE_STD, "energy_seeds": energy_seeds,
                     "timing": f"median of `repeats` calls after one warm-up call; a window whose "
                               f"max/min > {SPREAD} is re-measured (up to {WINDOWS} windows, the "
                               "lowest-median window is kept; *_windows says how many)",
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
        if variants and models and inp["name"] == models[0]:
            for label in VARIANTS:
                kind = "prototype" if "prototype" in label else "variant"
                result["rows"].append(bench_fedcomp(label, inp, reps, memory=memory,
                                                    transform=build_variant(label), kind=kind))
        if energy_seeds and "topk" in names and inp["name"] in models:
            result["energy"].append(topk_energy_over_seeds(inp, "topk", energy_seeds))
            if variants and inp["name"] == models[0]:
                label = "topk [prototype: bracket, exact k]"
                result["energy"].append(topk_energy_over_seeds(inp, label, energy_seeds,
                                                               transform=build_variant(label)))
        if variants and models and inp["name"] == models[0]:
            result["aggregation"] = aggregation_prototype(model_state(inp["name"]) if inp["name"] != "mnist"
                                                          else inp["tensors"])
        if models and inp["name"] == models[0]:
            result["profiles"] = {name: profile_encode(name, inp) for name in ("topk", "quant8", "quant4")
                                  if name in names}
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


# ======================================================================================
# Simulation overhead: fedcomp vs a plain Flower FedAvg app
# ======================================================================================
def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _status_kb(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class TreeMemorySampler(threading.Thread):
    """Peak PSS of this process plus all its descendants (Ray's GCS, raylet, workers),
    sampled every ``interval`` s. PSS splits shared pages (Ray's object store, shared
    libraries) between the processes mapping them, so the sum does not double count."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self.cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree
        self._stop_event = threading.Event()

    def run(self) -> None:
        root = os.getpid()
        while not self._stop_event.is_set():
            pids = _descendants(root)
            total = sum(_pss_bytes(p) for p in pids)
            if total > self.peak:
                self.peak, self.peak_processes = total, len(pids)
            for pid in pids:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), _proc_cpu_s(pid))
            self._stop_event.wait(self.interval)

    @property
    def tree_cpu_s(self) -> float:
        """CPU seconds used by this process tree (processes seen by the sampler)."""
        return sum(self.cpu.values())

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def _wrap(owner: Any, attr: str, before: Callable[..., None] | None = None,
          after: Callable[..., None] | None = None) -> None:
    """Replace ``owner.attr`` by a wrapper calling ``before(*args)`` / ``after(*args)``
    around the original (instrumentation of this benchmark process only)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            before(*args, **kwargs)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                after(*args, **kwargs)

    setattr(owner, attr, wrapper)


def _now() -> float:
    return time.perf_counter()


def _instrument_flower(marks: dict[str, Any]) -> None:
    """Timestamps of Ray start, actor pool, per-message processing and teardown."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    def mark(key: str) -> Callable[..., None]:
        return lambda *a, **k: marks["runs"][-1].__setitem__(key, _now())

    _wrap(RayBackend, "__init__", mark("ray_init_start"), mark("ray_init_end"))
    _wrap(RayBackend, "build", mark("pool_start"), mark("pool_end"))
    _wrap(RayBackend, "terminate", mark("terminate_start"), mark("terminate_end"))
    local = threading.local()

    def msg_start(*a: Any, **k: Any) -> None:
        local.t = _now()

    def msg_end(*a: Any, **k: Any) -> None:
        marks["runs"][-1].setdefault("client_calls", []).append((local.t, _now()))

    _wrap(RayBackend, "process_message", msg_start, msg_end)


def _round_start(server_round: int) -> None:
    run = _MARKS["runs"][-1]
    run.setdefault("round_start", {}).setdefault(int(server_round), _now())


def _round_end(server_round: int) -> None:
    run = _MARKS["runs"][-1]
    run.setdefault("round_end", {})[int(server_round)] = _now()
    run.setdefault("cpu_at_round_end", {})[int(server_round)] = (_tree_cpu_s(), _self_cpu_s())


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int | str) -> float:
    """utime + stime of one process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def _self_cpu_s() -> float:
    return _proc_cpu_s("self")


def _tree_cpu_s() -> float:
    """CPU seconds of this process and its live descendants (Ray's GCS, raylet, workers)."""
    return sum(_proc_cpu_s(p) for p in _descendants(os.getpid()))


_MARKS: dict[str, Any] = {"runs": []}
_STARTED = time.perf_counter()


def _overhead_cfg(clients: int, fraction: float, rounds: int, seed: int, output_dir: str,
                  ray_address: str | None) -> dict[str, Any]:
    from fedcomp.config import compose_config, to_container

    overrides = [
        "task=mnist", "compressor=none", f"federation.num_clients={clients}",
        f"federation.fraction_fit={fraction}", "federation.fraction_evaluate=0.0",
        f"federation.num_rounds={rounds}", f"seed={seed}", "resume=false",
        f"output_dir={output_dir}",
    ]
    if ray_address:
        overrides.append(f"engine.ray_address={ray_address}")
    return to_container(compose_config(overrides))


# ---- the plain Flower app (module level so Ray workers import it by reference) -------
@functools.lru_cache(maxsize=2)
def _plain_task(task_json: str) -> Any:
    from hydra.utils import instantiate

    return instantiate(json.loads(task_json), _convert_="all")


def _plain_train(cfg: dict[str, Any], msg: Any, context: Any) -> Any:
    """Flower quickstart-style train: load arrays, train one epoch, send the weights."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    from fedcomp.flower.setup import derive_seed
    from fedcomp.tasks.partitions import load_partitions

    torch.set_num_threads(1)
    task = _plain_task(json.dumps(cfg["task"], sort_keys=True))
    pid = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    seed = int(cfg["seed"])
    data = load_partitions(task, cfg["partition"], int(cfg["federation"]["num_clients"]), seed)[pid]
    model = task.build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    torch.manual_seed(derive_seed(seed, server_round, pid, 1))
    metrics = task.train(model, data, epochs=int(cfg["client"]["local_epochs"]),
                         steps=cfg["client"].get("local_steps"),
                         seed=derive_seed(seed, server_round, pid, 1))
    record = {k: float(v) for k, v in metrics.items()}
    record["num-examples"] = float(len(data))
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(record)})
    return Message(content=content, reply_to=msg)


def plain_flower_apps(cfg: dict[str, Any]) -> tuple[Any, Any]:
    """A plain Flower 1.42 FedAvg ServerApp/ClientApp: same task, partitions, training
    and central evaluation as fedcomp, no transforms, no ledger, no partition query."""
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from fedcomp.flower.setup import derive_seed

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        return _plain_train(cfg, msg, context)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        _MARKS["runs"][-1]["server_start"] = _now()
        task = _plain_task(json.dumps(cfg["task"], sort_keys=True))
        fed = cfg["federation"]
        torch.manual_seed(derive_seed(int(cfg["seed"]), 0, 0, 0))
        model = task.initial_model()
        test = task.test_dataset()

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            net = task.build_model()
            net.load_state_dict(arrays.to_torch_state_dict())
            metrics = MetricRecord({k: float(v) for k, v in task.evaluate(net, test).items()})
            if server_round > 0:
                _round_end(server_round)
            return metrics

        strategy = FedAvg(fraction_train=float(fed["fraction_fit"]), fraction_evaluate=0.0,
                          min_train_nodes=int(fed.get("min_fit_clients", 1)),
                          min_available_nodes=int(fed["num_clients"]))
        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                       num_rounds=int(fed["num_rounds"]), evaluate_fn=evaluate_fn)
        _MARKS["runs"][-1]["server_end"] = _now()

    return server_app, client_app


def _run_fedcomp_once(cfg: dict[str, Any]) -> None:
    from fedcomp.engines.launch import execute

    with contextlib.redirect_stdout(io.StringIO()):
        execute(cfg)


def _run_plain_once(cfg: dict[str, Any]) -> None:
    import logging

    from flwr.simulation import run_simulation

    from fedcomp.engines.simulation import backend_config

    server_app, client_app = plain_flower_apps(cfg)
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)  # as fedcomp.engines.simulation.simulate does
    try:
        run_simulation(server_app=server_app, client_app=client_app,
                       num_supernodes=int(cfg["federation"]["num_clients"]),
                       backend_config=backend_config(cfg["engine"]), verbose_logging=False)
    finally:
        flwr_logger.setLevel(previous)


def _instrument_fedcomp() -> dict[str, float]:
    """Round and ServerApp timestamps of a fedcomp run, and time spent in wire_bytes."""
    from fedcomp.fl import server_app

    import fedcomp.engines.simulation
    import fedcomp.run
    from fedcomp import ledger
    from fedcomp.flower.strategy import TrackingFedAvg

    wire = {"calls": 0, "seconds": 0.0}

    def setmark(key: str) -> Callable[..., None]:
        return lambda *a, **k: _MARKS["runs"][-1].__setitem__(key, _now())

    _wrap(TrackingFedAvg, "configure_train", lambda self, rnd, *a, **k: _round_start(rnd))
    _wrap(server_app.RoundPrinter, "line", lambda self, rnd, *a, **k: _round_end(rnd))
    _wrap(server_app, "run_rounds", setmark("server_start"), setmark("server_end"))
    _wrap(server_app, "write_results", setmark("write_start"), setmark("write_end"))
    _wrap(fedcomp.run, "prepare", setmark("prepare_start"), setmark("prepare_end"))
    _wrap(fedcomp.engines.simulation, "simulate", setmark("simulate_start"), setmark("simulate_end"))
    original = ledger.wire_bytes

    def timed_wire_bytes(message: Any) -> int:
        start = _now()
        try:
            return original(message)
        finally:
            wire["calls"] += 1
            wire["seconds"] += _now() - start

    ledger.wire_bytes = timed_wire_bytes
    return wire


def _derive_run(run: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Durations from one run's timestamps (seconds)."""
    starts = {int(k): v for k, v in run.get("round_start", {}).items()}
    ends = {int(k): v for k, v in run.get("round_end", {}).items()}
    out: dict[str, Any] = {}
    if len(ends) < rounds or 1 not in starts:
        out["error"] = f"{len(ends)} of {rounds} rounds finished; round 1 start seen: {1 in starts}"
        return out
    # The ServerApp starts before Ray: round 1 can be configured while Ray still starts.
    t0 = max(starts[1], run.get("pool_end", starts[1]))
    call = run["call_start"]
    out.update(
        ray_init_s=run.get("ray_init_end", call) - run.get("ray_init_start", call),
        actor_pool_s=run.get("pool_end", call) - run.get("pool_start", call),
        startup_s=t0 - call,  # fedcomp: prepare + Ray + pool; plain: Ray + pool
        first_round_s=ends[1] - t0,
        steady_round_s=(ends[rounds] - ends[1]) / (rounds - 1) if rounds > 1 else ends[1] - t0,
        rounds_s=ends[rounds] - t0,
        per_round_s=(run["server_end"] - t0) / rounds,
        # rounds 2..N to the ServerApp's end: round 1 holds the Ray workers' cold start
        per_round_warm_s=(run["server_end"] - ends[1]) / (rounds - 1) if rounds > 1 else None,
        after_last_round_s=run["server_end"] - ends[rounds],  # fedcomp: write_results
        teardown_s=run["call_end"] - run["server_end"],
        run_total_s=run["call_end"] - call,
        round_s=[ends[r] - (ends[r - 1] if r > 1 else t0) for r in range(1, rounds + 1)],
    )
    if "prepare_start" in run:
        out["prepare_s"] = run["prepare_end"] - run["prepare_start"]
    if "write_start" in run:
        out["write_results_s"] = run["write_end"] - run["write_start"]
    calls = run.get("client_calls", [])
    if calls:
        durations = [b - a for a, b in calls]
        out["client_calls"] = len(durations)
        out["client_call_first_s"] = durations[0]
        out["client_call_median_s"] = _median(durations[1:] or durations)
    # the fixed part of a run: everything but the steady-state rounds
    out["fixed_s"] = out["run_total_s"] - rounds * out["steady_round_s"]
    cpu = {int(k): v for k, v in run.get("cpu_at_round_end", {}).items()}
    if rounds > 1 and 1 in cpu and rounds in cpu:
        # CPU per steady round: far less sensitive than wall time to the other work on a
        # shared machine and to Flower's 0.1 s polling (see README)
        out["cpu_per_round_tree_s"] = (cpu[rounds][0] - cpu[1][0]) / (rounds - 1)
        out["cpu_per_round_driver_s"] = (cpu[rounds][1] - cpu[1][1]) / (rounds - 1)
    return out


def _profile_server(mode: str, store: dict[str, Any]) -> None:
    """cProfile the ServerApp thread (fedcomp ``run_rounds`` / the plain app's strategy loop)."""
    from fedcomp.fl import server_app
    from flwr.serverapp.strategy import FedAvg

    owner, attr = (server_app, "run_rounds") if mode == "fedcomp" else (FedAvg, "start")
    original = getattr(owner, attr)

    @functools.wraps(original)
    def profiled(*args: Any, **kwargs: Any) -> Any:
        prof = cProfile.Profile()
        prof.enable()
        try:
            return original(*args, **kwargs)
        finally:
            prof.disable()
            for key, order in (("tottime", "tottime"), ("cumtime", "cumulative")):
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(25)
                store.setdefault("server_profile", {})[key] = _trim_profile(buf.getvalue())

    setattr(owner, attr, profiled)


def overhead_child(mode: str, rounds: int, clients: int, fraction: float, seed: int,
                   runs: int, ray_address: str | None, out: str, profile: bool = False) -> None:
    """One benchmark process: ``runs`` simulations in a row (as a Hydra sweep would).

    ``profile``: cProfile the ServerApp thread (slows it; for diagnosis, not timing)."""
    t_process = _now()
    busy_start = _system_busy_s()
    from fedcomp.engines.simulation import quiet_environment

    quiet_environment()
    sampler = TreeMemorySampler()
    sampler.start()
    import ray

    _instrument_flower(_MARKS)
    if mode == "fedcomp":
        wire = _instrument_fedcomp()
    else:
        from flwr.serverapp.strategy import FedAvg

        wire = None
        _wrap(FedAvg, "configure_train", lambda self, rnd, *a, **k: _round_start(rnd))
    profiles: dict[str, Any] = {}
    if profile:
        _profile_server(mode, profiles)
    results = []
    imports_s = _now() - t_process
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="fedcomp-bench-")
        try:
            cfg = _overhead_cfg(clients, fraction, rounds, seed, tmp, ray_address)
            run: dict[str, Any] = {"call_start": _now()}
            _MARKS["runs"].append(run)
            wire_before = dict(wire) if wire else None
            if mode == "fedcomp":
                _run_fedcomp_once(cfg)
            else:
                _run_plain_once(cfg)
            run["call_end"] = _now()
            derived = _derive_run(run, rounds)
            derived["ray_initialized_after_run"] = bool(ray.is_initialized())
            if wire is not None and wire_before is not None:
                derived["wire_bytes_calls_driver"] = wire["calls"] - wire_before["calls"]
                derived["wire_bytes_s_driver"] = wire["seconds"] - wire_before["seconds"]
            results.append(derived)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    peak_tree = sampler.stop()
    process_s = _now() - t_process
    ours = max(sampler.tree_cpu_s, _self_cpu_s())
    foreign = max(0.0, _system_busy_s() - busy_start - ours) / (process_s * (os.cpu_count() or 1))
    data = {
        "mode": mode, "rounds": rounds, "clients": clients, "fraction": fraction,
        "ray_address": ray_address, "imports_s": imports_s, "runs": results,
        "peak_pss_tree_bytes": peak_tree, "peak_tree_processes": sampler.peak_processes,
        "peak_rss_driver_bytes": _status_kb("VmHWM") * 1024,
        "process_s": process_s, "tree_cpu_s": ours, "foreign_cpu_share": foreign, **profiles,
    }
    _write_json(Path(out), data)


def _run_child(mode: str, rounds: int, clients: int, fraction: float, seed: int, runs: int,
               ray_address: str | None = None, timeout: float = 600,
               profile: bool = False) -> dict[str, Any]:
    """Run :func:`overhead_child` in a fresh Python process; its JSON plus wall time."""
    with tempfile.TemporaryDirectory(prefix="fedcomp-bench-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, "-m", "benchmarks.bench", "_overhead-child", "--mode", mode,
               "--rounds", str(rounds), "--clients", str(clients), "--fraction", str(fraction),
               "--seed", str(seed), "--runs", str(runs), "--out", str(out)]
        if ray_address:
            cmd += ["--ray-address", ray_address]
        if profile:
            cmd.append("--profile")
        start = _now()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        wall = _now() - start
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"overhead child ({mode}) failed with {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        data = json.loads(out.read_text())
    data["wall_s"] = wall
    data["loadavg_after"] = list(os.getloadavg())
    return data


def _system_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat; steal time included)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def ray_cluster(num_cpus: int | None = None, timeout: float = 90) -> Iterable[dict[str, Any]]:
    """A private, long-lived local Ray cluster (``ray start --head --block``) for the
    runs to attach to via ``engine.ray_address``; stopped (only its own processes) on exit."""
    from fedcomp.engines.simulation import QUIET_ENV

    temp_dir = tempfile.mkdtemp(prefix="fcb-ray-", dir="/tmp")
    port = _free_port()
    env = {**os.environ, **QUIET_ENV}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_bin, "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp_dir}",
           "--include-dashboard=false", "--disable-usage-stats",
           "--node-ip-address=127.0.0.1"]
    if num_cpus:
        cmd.append(f"--num-cpus={num_cpus}")
    log_path = Path(temp_dir) / "ray-start.log"
    info: dict[str, Any] = {"address": f"127.0.0.1:{port}", "temp_dir": temp_dir}
    start = _now()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        probe = [sys.executable, "-c",
                 "import ray,sys; ray.init(address=sys.argv[1], logging_level='error'); ray.shutdown()",
                 info["address"]]
        deadline = time.monotonic() + timeout
        while True:  # ready when a driver can connect
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {log_path.read_text()[-2000:]}")
            if subprocess.run(probe, env=env, capture_output=True, timeout=timeout,
                              check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray cluster not ready after {timeout} s")
            time.sleep(0.5)
        info["start_s"] = _now() - start
        yield info
    finally:
        stop = _now()
        # `ray start --block` shuts its own processes down on SIGTERM; never `ray stop`
        # (it would stop every Ray instance on this shared machine).
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        leftovers = _processes_mentioning(temp_dir)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        info["stop_s"] = _now() - stop
        info["leftover_processes_killed"] = len(leftovers)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (our cluster's private temp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _ensure_task_identity() -> None:
    """Flower 1.42 builds a Message only inside a task; give this process a dummy one
    (as ``tests/conftest.py`` does) when it has none."""
    from flwr.supercore.task_identity import TaskIdentity

    if getattr(TaskIdentity, "_task_id", None) is None:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 42, 1


def wire_cost(repeats: int = 5) -> dict[str, Any]:
    """Seconds per ``fedcomp.flower.measure.wire_bytes`` of a full-model train message (MNIST,
    Pythia-14M), a profile, and the same call inside Flower's
    ``no_object_id_recompute()`` context (prototype fix: same result).

    Each call gets a fresh message (in a run every process measures objects it has not
    hashed yet: Ray hands each process copies); ``again`` re-measures the same message.
    """
    from flwr.app import ConfigRecord, Message
    from flwr.app.message_type import MessageType
    from flwr.supercore.inflatable.inflatable_object import no_object_id_recompute

    from fedcomp.compressors.base import Encoded
    from fedcomp.flower import protocol as records
    from fedcomp.flower.measure import wire_bytes

    _ensure_task_identity()

    def fast(message: Any) -> int:
        with no_object_id_recompute():
            return wire_bytes(message)

    out: dict[str, Any] = {}
    for task in ("mnist", "pythia14m"):
        state = model_state(task)
        dense = int(sum(a.nbytes for a in state.values()))

        def message(state: Tensors = state, dense: int = dense) -> Any:
            content = records.pack(Encoded({k: v.copy() for k, v in state.items()}, {}), dense)
            content[records.CONFIG] = ConfigRecord({"server-round": 1})
            return Message(content, 1, MessageType.TRAIN)

        entry: dict[str, Any] = {"dense_bytes": dense}
        n = repeats if task == "pythia14m" else 10 * repeats
        for label, fn in (("current", wire_bytes), ("no_object_id_recompute", fast)):
            fresh, again = [], []
            size = 0
            for _ in range(n + 1):
                msg = message()
                start = _now()
                size = fn(msg)
                fresh.append(_now() - start)
                start = _now()
                fn(msg)
                again.append(_now() - start)
            entry[label] = {"wire_bytes": size, "fresh_s": _median(fresh[1:]), "again_s": _median(again[1:]),
                            "fresh_gbps": dense / _median(fresh[1:]) / 1e9}
        entry["same_result"] = entry["current"]["wire_bytes"] == entry["no_object_id_recompute"]["wire_bytes"]
        out[task] = entry
        if task == "pythia14m":
            msg = message()
            prof = cProfile.Profile()
            prof.enable()
            wire_bytes(msg)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(10)
            out["profile_pythia14m_tottime"] = _trim_profile(buf.getvalue())
    return out


def bookkeeping_cost(rounds: int = 20, clients: int = 10, fraction: float = 0.5,
                     seed: int = 0) -> dict[str, Any]:
    """The per-round work of each app measured in this process, without Ray or polling.

    fedcomp: ``TrackingFedAvg.configure_train`` (packing, server ledger rows),
    ``ledger_mod`` + ``client_train`` per client, ``aggregate_train`` + the round line.
    Plain Flower: ``FedAvg.configure_train``, the plain train function, ``aggregate_train``.
    Same model, partitions, training and seeds; medians over rounds 3..N (milliseconds).
    """
    import logging

    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
    from flwr.serverapp.strategy import FedAvg

    from fedcomp.flower.client_app import client_train
    from fedcomp.flower.mods import ledger_mod
    from fedcomp.flower.server_app import RoundPrinter
    from fedcomp.flower.setup import get_setup
    from fedcomp.flower.strategy import TrackingFedAvg
    from fedcomp.tasks.partitions import load_partitions

    _ensure_task_identity()
    with tempfile.TemporaryDirectory(prefix="fedcomp-bench-") as tmp:
        cfg = _overhead_cfg(clients, fraction, rounds, seed, tmp, None)
    setup = get_setup(cfg)
    load_partitions(setup.task, cfg["partition"], clients, seed)
    nodes = list(range(1, clients + 1))

    class _Grid:  # what both strategies ask of the grid when sampling
        def get_node_ids(self) -> list[int]:
            return nodes

    grid = _Grid()

    def contexts() -> dict[int, Any]:
        return {n: Context(run_id=1, node_id=n, node_config={"partition-id": n - 1},
                           state=RecordDict(), run_config={}) for n in nodes}

    fed = TrackingFedAvg(setup, "bench")
    fed.node_to_partition = {n: n - 1 for n in nodes}
    fed_ctx = contexts()
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
    plain = FedAvg(fraction_train=fraction, fraction_evaluate=0.0, min_train_nodes=1,
                   min_available_nodes=clients)
    plain_ctx = contexts()
    torch.manual_seed(0)
    arrays = ArrayRecord(setup.task.initial_model().state_dict())
    rows: dict[str, list[float]] = {k: [] for k in (
        "fedcomp_configure", "fedcomp_client", "fedcomp_aggregate",
        "flower_configure", "flower_client", "flower_aggregate")}
    try:
        for rnd in range(1, rounds + 1):
            t0 = _now()
            msgs = list(fed.configure_train(rnd, ArrayRecord(), ConfigRecord(), grid))
            t1 = _now()
            replies = []
            for m in msgs:
                c0 = _now()
                reply = ledger_mod(m, fed_ctx[m.metadata.dst_node_id],
                                   lambda msg, ctx: client_train(setup, msg, ctx))
                rows["fedcomp_client"].append(_now() - c0)
                reply.metadata.__dict__["_src_node_id"] = m.metadata.dst_node_id  # as Flower routes it
                replies.append(reply)
            t2 = _now()
            fed.aggregate_train(rnd, replies)
            RoundPrinter(fed, rounds, echo=lambda _: None).line(rnd, {})
            t3 = _now()
            rows["fedcomp_configure"].append(t1 - t0)
            rows["fedcomp_aggregate"].append(t3 - t2)

            t0 = _now()
            msgs = list(plain.configure_train(rnd, arrays, ConfigRecord(), grid))
            t1 = _now()
            replies = []
            for m in msgs:
                c0 = _now()
                replies.append(_plain_train(cfg, m, plain_ctx[m.metadata.dst_node_id]))
                rows["flower_client"].append(_now() - c0)
            t2 = _now()
            arrays, _ = plain.aggregate_train(rnd, replies)
            t3 = _now()
            rows["flower_configure"].append(t1 - t0)
            rows["flower_aggregate"].append(t3 - t2)
    finally:
        flwr_logger.setLevel(previous)
    skip = 2 * max(1, len(rows["fedcomp_client"]) // rounds)
    out = {key: _median(v[2:] if "client" not in key else v[skip:]) * 1e3 for key, v in rows.items()}
    out = {f"{k}_ms": v for k, v in out.items()}
    out["clients_per_round"] = len(rows["fedcomp_client"]) // rounds
    for mode in ("fedcomp", "flower"):
        out[f"{mode}_server_ms"] = out[f"{mode}_configure_ms"] + out[f"{mode}_aggregate_ms"]
    out["server_extra_ms"] = out["fedcomp_server_ms"] - out["flower_server_ms"]
    out["client_extra_ms"] = out["fedcomp_client_ms"] - out["flower_client_ms"]
    return out


def _trim_profile(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    keep = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")]
    lines = lines[keep[0]:] if keep else lines
    return [ln.replace(str(Path(sys.executable).parent.parent), "<venv>") for ln in lines]


def run_overhead(rounds: int = 30, clients: int = 10, fraction: float = 0.5, seed: int = 0,
                 runs: int = 2, pairs: int = 2, reuse: bool = True, sweep_runs: int = 12,
                 sweep_rounds: int = 10,
                 profile: bool = False, budget_s: float | None = None,
                 out_dir: str | Path | None = DEFAULT_OUT,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """fedcomp vs plain Flower per-round time and memory; start-up cost and Ray reuse.

    Parameters
    ----------
    runs, pairs
        Simulations per process, and fedcomp/Flower process pairs (alternating).
    reuse
        Also run fedcomp attached to one long-lived Ray cluster (``engine.ray_address``).
    profile
        One extra fedcomp and Flower process each with the ServerApp thread under
        cProfile (diagnosis only; not used for the timings).
    budget_s
        Skip further pairs when the next one would likely end after this many seconds.
    """
    started = _now()
    machine = machine_info()
    echo(f"overhead: mnist, {clients} clients, fraction {fraction}, {rounds} rounds, "
         f"{runs} runs/process, {pairs} pair(s); load {machine['loadavg_1m_5m_15m']}")
    result: dict[str, Any] = {
        "benchmark": "overhead", "command": "python -m benchmarks.bench overhead", "machine": machine,
        "settings": {"task": "mnist", "compressor": "none", "rounds": rounds, "clients": clients,
                     "fraction_fit": fraction, "fraction_evaluate": 0.0, "seed": seed,
                     "runs_per_process": runs, "pairs": pairs,
                     "timing": "per round = (ServerApp end - max(round-1 start, Ray actor pool "
                               "built)) / rounds; steady = mean of rounds 2..N"},
        "children": [],
    }
    t0 = _now()
    result["wire_cost"] = wire_cost()
    result["bookkeeping"] = bookkeeping_cost(rounds=20, clients=clients,
                                             fraction=fraction, seed=seed)
    echo(f"  wire_bytes and in-process bookkeeping measured ({_now() - t0:.1f} s)")
    pair_s = 0.0
    for pair in range(pairs):
        if pair and budget_s is not None and _now() - started + pair_s * 1.5 > budget_s:
            echo(f"  skipping pair {pair + 1}: time budget {budget_s:.0f} s")
            result["settings"]["pairs_run"] = pair
            break
        t_pair = _now()
        for mode in ("fedcomp", "flower"):
            t0 = _now()
            child = _run_child(mode, rounds, clients, fraction, seed, runs)
            result["children"].append(child)
            echo(f"  {mode:>8} local Ray x{runs}: {_now() - t0:5.1f} s "
                 f"(per round {[round(r.get('per_round_s', float('nan')), 3) for r in child['runs']]}; "
                 f"other processes used {child['foreign_cpu_share'] * 100:.0f} % of the CPUs)")
        pair_s = _now() - t_pair
    if profile:
        result["profiles"] = {}
        for mode in ("fedcomp", "flower"):
            child = _run_child(mode, rounds, clients, fraction, seed, 1, profile=True)
            result["profiles"][mode] = child.get("server_profile")
            echo(f"  {mode:>8} profiled run done")
    if reuse and budget_s is not None and _now() - started + pair_s >= budget_s:
        echo(f"  skipping the attached-cluster runs: time budget {budget_s:.0f} s")
        result["cluster"] = {"skipped": f"time budget {budget_s:.0f} s"}
        reuse = False
    if reuse:
        t0 = _now()
        try:
            with ray_cluster() as cluster:
                child = _run_child("fedcomp", rounds, clients, fraction, seed, runs,
                                   ray_address=cluster["address"])
                child["attached"] = True
                result["children"].append(child)
            result["cluster"] = {k: v for k, v in cluster.items() if k != "temp_dir"}
            echo(f"   fedcomp attached to a running cluster x{runs}: {_now() - t0:5.1f} s "
                 f"(cluster start {cluster['start_s']:.1f} s)")
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            result["cluster"] = {"error": str(err)[-2000:]}
            echo(f"  Ray cluster reuse failed: {err}")
    result["summary"] = summarize_overhead(result, sweep_runs, sweep_rounds)
    summary = result["summary"]
    result["targets"] = [
        {"target": "fedcomp / plain Flower wall time per round <= 1.05 (rounds 1..N)",
         "value": summary.get("per_round_ratio"), "threshold": TARGET_OVERHEAD_RATIO,
         "met": (summary.get("per_round_ratio") or 99) <= TARGET_OVERHEAD_RATIO,
         "detail": "from round 1's start (once Ray's actor pool exists) to the ServerApp's end, incl. "
                   "the Ray workers' cold start in round 1 and fedcomp's result files"},
        {"target": "fedcomp / plain Flower wall time per round <= 1.05 (rounds 2..N)",
         "value": summary.get("per_round_warm_ratio"), "threshold": TARGET_OVERHEAD_RATIO,
         "met": (summary.get("per_round_warm_ratio") or 99) <= TARGET_OVERHEAD_RATIO,
         "detail": "from round 1's end to the ServerApp's end (incl. fedcomp's result files); "
                   f"steady rounds only: {_fmt(summary.get('steady_round_ratio'), '.3f')}; median "
                   f"round: {_fmt(summary.get('round_median_ratio'), '.3f')}; CPU per round (driver + "
                   f"workers): {_fmt(summary.get('cpu_per_round_tree_ratio'), '.3f')}"},
        {"target": "fedcomp / plain Flower peak memory (driver + Ray, PSS) <= 1.05",
         "value": summary.get("peak_pss_tree_ratio"), "threshold": TARGET_OVERHEAD_RATIO,
         "met": (summary.get("peak_pss_tree_ratio") or 99) <= TARGET_OVERHEAD_RATIO,
         "detail": f"driver RSS ratio {_fmt(summary.get('peak_rss_driver_ratio'), '.3f')}"},
    ]
    result["elapsed_s"] = _now() - started
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    if out_dir is not None:
        _write_json(Path(out_dir) / "overhead.json", result)
    return result


def _collect(children: list[dict], mode: str, attached: bool, key: str) -> list[float]:
    return [r[key] for c in children if c["mode"] == mode and bool(c.get("attached")) == attached
            for r in c["runs"] if key in r]


def summarize_overhead(result: dict[str, Any], sweep_runs: int = 12,
                       sweep_rounds: int = 10) -> dict[str, Any]:
    """Medians over runs, fedcomp/plain ratios, and the start-up share of a sweep.

    Process pairs (fedcomp, then Flower) during which other processes used more than
    :data:`FOREIGN_MAX` of the CPUs are left out when at least one pair is clean.
    """
    every = result["children"]
    local = [c for c in every if not c.get("attached")]
    pairs = [local[i : i + 2] for i in range(0, len(local) - 1, 2)]
    s: dict[str, Any] = {"pairs": []}
    for pair in pairs:
        entry = {"foreign_cpu_share": [c.get("foreign_cpu_share") for c in pair]}
        for key in ("per_round_s", "per_round_warm_s", "steady_round_s"):
            a = _median([r[key] for r in pair[0]["runs"] if key in r] or [float("nan")])
            b = _median([r[key] for r in pair[1]["runs"] if key in r] or [float("nan")])
            entry[key.removesuffix("_s") + "_ratio"] = a / b
        entry["clean"] = all((c.get("foreign_cpu_share") or 0) <= FOREIGN_MAX for c in pair)
        s["pairs"].append(entry)
    clean = [pair for pair, e in zip(pairs, s["pairs"]) if e["clean"]]
    used = clean or pairs
    s["pairs_used"] = [i for i, pair in enumerate(pairs) if pair in used]
    ch = [c for pair in used for c in pair] + [c for c in every if c.get("attached")]
    for mode in ("fedcomp", "flower"):
        for key in ("per_round_s", "per_round_warm_s", "steady_round_s", "first_round_s",
                    "startup_s", "ray_init_s",
                    "actor_pool_s", "teardown_s", "fixed_s", "run_total_s", "after_last_round_s",
                    "client_call_median_s", "client_call_first_s"):
            vals = _collect(ch, mode, False, key)
            if vals:
                s[f"{mode}_{key}"] = _median(vals)
        mem = [c["peak_pss_tree_bytes"] for c in ch if c["mode"] == mode and not c.get("attached")]
        drv = [c["peak_rss_driver_bytes"] for c in ch if c["mode"] == mode and not c.get("attached")]
        imp = [c["imports_s"] for c in ch if c["mode"] == mode and not c.get("attached")]
        if mem:
            s[f"{mode}_peak_pss_tree_bytes"] = max(mem)
            s[f"{mode}_peak_rss_driver_bytes"] = max(drv)
            s[f"{mode}_imports_s"] = _median(imp)
    for mode in ("fedcomp", "flower"):
        pooled = [x for c in ch if c["mode"] == mode and not c.get("attached")
                  for r in c["runs"] for x in r.get("round_s", [])[1:]]
        if pooled:
            s[f"{mode}_round_median_s"] = _median(pooled)
            s[f"{mode}_round_mean_s"] = float(np.mean(pooled))
            s[f"{mode}_rounds_pooled"] = len(pooled)
        for key in ("cpu_per_round_tree_s", "cpu_per_round_driver_s"):
            vals = _collect(ch, mode, False, key)
            if vals:
                s[f"{mode}_{key}"] = _median(vals)
    for key in ("per_round_s", "per_round_warm_s", "steady_round_s", "first_round_s",
                "round_median_s", "round_mean_s", "cpu_per_round_tree_s", "cpu_per_round_driver_s",
                "client_call_median_s",
                "peak_pss_tree_bytes", "peak_rss_driver_bytes"):
        a, b = s.get(f"fedcomp_{key}"), s.get(f"flower_{key}")
        if a is not None and b:
            s[key.removesuffix("_s").removesuffix("_bytes") + "_ratio"] = a / b
    # wire_bytes share of a fedcomp round (driver measured; clients measure as many)
    wire_s = _collect(ch, "fedcomp", False, "wire_bytes_s_driver")
    rounds = result["settings"]["rounds"]
    if wire_s and s.get("fedcomp_per_round_warm_s"):
        per_round = _median(wire_s) / rounds
        s["wire_bytes_s_per_round_driver"] = per_round
        s["wire_bytes_share_driver"] = per_round / s["fedcomp_per_round_warm_s"]
        s["wire_bytes_calls_per_round_driver"] = _median(
            _collect(ch, "fedcomp", False, "wire_bytes_calls_driver")) / rounds
    # start-up: a Hydra sweep (basic launcher) runs its jobs one after another in one
    # process: Python imports once, then per run Ray start + actor pool + teardown.
    steady = s.get("fedcomp_steady_round_s")
    fixed_local = _collect(ch, "fedcomp", False, "fixed_s")
    if steady and fixed_local:
        later = [r["fixed_s"] for c in ch if c["mode"] == "fedcomp" and not c.get("attached")
                 for r in c["runs"][1:]] or fixed_local
        fixed = _median(later)
        imports = s.get("fedcomp_imports_s", 0.0)
        work = sweep_rounds * steady
        total = imports + sweep_runs * (fixed + work)
        s["sweep"] = {"runs": sweep_runs, "rounds_per_run": sweep_rounds, "fixed_per_run_s": fixed,
                      "rounds_per_run_s": work, "imports_once_s": imports, "total_s": total,
                      "fixed_share": (imports + sweep_runs * fixed) / total}
        attached = _collect(ch, "fedcomp", True, "fixed_s")
        cluster = result.get("cluster", {})
        if attached and "start_s" in cluster:
            fixed_a = _median([r["fixed_s"] for c in ch if c.get("attached") for r in c["runs"][1:]]
                              or attached)
            total_a = cluster["start_s"] + imports + sweep_runs * (fixed_a + work)
            s["sweep_attached"] = {
                "fixed_per_run_s": fixed_a, "cluster_start_once_s": cluster["start_s"],
                "total_s": total_a,
                "fixed_share": (cluster["start_s"] + imports + sweep_runs * fixed_a) / total_a,
                "saving_s": total - total_a,
                "ray_init_s": _median(_collect(ch, "fedcomp", True, "ray_init_s")),
                "actor_pool_s": _median(_collect(ch, "fedcomp", True, "actor_pool_s")),
                "first_round_s": _median(_collect(ch, "fedcomp", True, "first_round_s")),
                "teardown_s": _median(_collect(ch, "fedcomp", True, "teardown_s")),
                "ray_initialized_after_run": [r.get("ray_initialized_after_run")
                                              for c in ch if c.get("attached") for r in c["runs"]],
            }
    s["ray_initialized_after_run_local"] = [r.get("ray_initialized_after_run")
                                            for c in ch if not c.get("attached") for r in c["runs"]]
    return s


# ======================================================================================
# Markdown
# ======================================================================================
def _mb(num: float | None) -> str:
    return "–" if num is None else f"{num / 1e6:,.2f} MB" if num >= 1e5 else f"{num / 1e3:,.1f} kB"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1e3:,.1f}" if seconds >= 1e-3 else f"{seconds * 1e3:.3f}"


def _header(machine: dict[str, Any]) -> str:
    return (f"{machine['date_utc'][:10]} · {machine['cpu_model']} ({machine['cpu_count']} cores) · "
            f"torch {machine['torch']} ({machine['torch_threads']} threads) · flwr {machine['flwr']} · "
            f"numpy {machine['numpy']} · load {machine['loadavg_1m_5m_15m'][0]:.2f} · "
            f"git {machine.get('git_commit')}")


def codecs_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    main = result["settings"]["models"][0] if result["settings"]["models"] else None
    lines = [f"### Codecs — `{result['command']}`", "", _header(result["machine"]), ""]
    for inp in result["inputs"]:
        if inp["name"] not in result["settings"]["models"]:
            continue
        lines += [(f"**{inp['name']}**: {inp['numel']:,} fp32 = {inp['dense_bytes'] / 1e6:.2f} MB in "
                  f"{inp['num_tensors']} tensors ({inp['kind']}); median of "
                  f"{next((r['repeats'] for r in rows if r['input'] == inp['name'] and r.get('repeats')), '?')} "
                  "after a warm-up"), "",
                  ("| compressor | encode ms | decode ms | encode GB/s | decode GB/s | payload | x smaller "
                  "| rel. error | encode peak / input | decode peak / input | kept energy vs exact top-k |"),
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            if r["input"] != inp["name"]:
                continue
            if r["status"] != "ok":
                lines.append(f"| {r['compressor']} | skipped: patterns match no tensor | | | | | | | | | |")
                continue
            lines.append(
                f"| {r['compressor']} | {_ms(r['encode_s'])} | {_ms(r['decode_s'])} | "
                f"{_fmt(r['encode_gbps'], '.2f')} | {_fmt(r['decode_gbps'], '.2f')} | "
                f"{_mb(r['payload_bytes'])} | {_fmt(r['compression_ratio'], '.1f')} | "
                f"{_fmt(r.get('rel_error'), '.4f')} | {_fmt(r.get('encode_peak_over_input'), '.2f')} | "
                f"{_fmt(r.get('decode_peak_over_input'), '.2f')} | {_fmt(r.get('kept_energy_ratio'), '.4f')} |")
        lines.append("")
    comps = result.get("comparisons", [])
    if comps:
        lines += [("**fedcomp vs the reference projects' way** (time ratio fedcomp / reference: < 1 is "
                  "faster; speedup = reference / fedcomp)"), "",
                  ("| input | fedcomp | reference | encode ratio | encode speedup | decode ratio | "
                  "payload ratio |"), "|---|---|---|--:|--:|--:|--:|"]
        for c in comps:
            lines.append(f"| {c['input']} | {c['fedcomp']} | {c['reference']} | {c['encode_ratio']:.3f} | "
                         f"{c['encode_speedup']:.1f}x | {c['decode_ratio']:.3f} | {c['payload_ratio']:.3f} |")
        lines.append("")
    energy = result.get("energy", [])
    if energy:
        lines += [("**Sampled top-k: energy kept vs exact top-k** (sum of squares of the kept entries, "
                  "same data, several rng seeds)"), "",
                  "| input | selection | seeds | min | mean | max | kept / k |",
                  "|---|---|--:|--:|--:|--:|--:|"]
        for e in energy:
            lines.append(f"| {e['input']} | {e['compressor']} | {e['seeds']} | {e['energy_ratio_min']:.4f} | "
                         f"{e['energy_ratio_mean']:.4f} | {e['energy_ratio_max']:.4f} | "
                         f"{e['kept_over_k_min']:.3f}..{e['kept_over_k_max']:.3f} |")
        lines.append("")
    scal = result.get("scaling", [])
    if scal:
        sizes = scal[0]["sizes"]
        heads = " | ".join(_size_label(n) for n in sizes)
        lines += [("**Scaling on flat fp32 vectors**: encode / decode ns per element, and the fitted "
                  "slope of log(time) vs log(size) (1 = linear) over all sizes / over sizes >= "
                  f"{_size_label(LARGE_REGIME)}"), "",
                  (f"| compressor | encode ns/el: {heads} | slope all / large | decode ns/el: {heads} "
                  "| slope all / large |"),
                  "|---|" + "--:|" * (2 * len(sizes) + 2)]
        for e in scal:
            enc = " | ".join(f"{v:.2f}" for v in e["encode_ns_per_element"])
            dec = " | ".join(f"{v:.2f}" for v in e["decode_ns_per_element"])
            lines.append(f"| {e['compressor']} | {enc} | {e['encode_slope']:.2f} / "
                         f"{_fmt(e.get('encode_slope_large'), '.2f')} | {dec} | {e['decode_slope']:.2f} / "
                         f"{_fmt(e.get('decode_slope_large'), '.2f')} |")
        lines.append("")
    agg = result.get("aggregation")
    if agg:
        c, st = agg["current"], agg["streaming"]
        lines += [(f"**Server aggregation of {agg['clients']} dense updates of {main}** (prototype, "
                  "not in fedcomp): current `np.sum([w * u ...])` "
                  f"{c['s'] * 1e3:.0f} ms, peak {c['peak_bytes'] / 1e6:.0f} MB; streaming in-place "
                  f"accumulation {st['s'] * 1e3:.0f} ms, peak {st['peak_bytes'] / 1e6:.0f} MB "
                  f"(model {agg['dense_bytes'] / 1e6:.1f} MB; max |diff| {agg['max_abs_diff']:.1e})."), ""]
    lines += _targets_md(result.get("targets", []), f"Codec targets (on {main})")
    return "\n".join(lines)


def _targets_md(targets: list[dict], title: str) -> list[str]:
    if not targets:
        return []
    out = [f"**{title}**", "", "| target | value | threshold | met | detail |", "|---|--:|--:|---|---|"]
    for t in targets:
        met = "yes" if t["met"] else "**no**"
        out.append(f"| {t['target']} | {_fmt(t['value'], '.3f')} | {t['threshold']} | {met} | {t['detail']} |")
    return out + [""]


def overhead_markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    st = result["settings"]
    lines = [f"### Simulation overhead — `{result['command']}`", "", _header(result["machine"]), "",
             (f"mnist CNN, identity transform, {st['clients']} clients, fraction_fit {st['fraction_fit']}, "
             f"{st['rounds']} rounds; each mode in a fresh process running {st['runs_per_process']} "
             "simulations one after another (as a Hydra sweep does); medians over runs."), "",
             "| | fedcomp (full ledger) | plain Flower FedAvg | fedcomp / Flower |", "|---|--:|--:|--:|"]

    def row(label: str, key: str, fmt: Callable[[float], str], ratio: str | None = None) -> None:
        a, b = s.get(f"fedcomp_{key}"), s.get(f"flower_{key}")
        r = s.get(ratio) if ratio else (a / b if a is not None and b else None)
        lines.append(f"| {label} | {fmt(a) if a is not None else '–'} | {fmt(b) if b is not None else '–'} | "
                     f"{_fmt(r, '.3f')} |")

    sec = lambda v: f"{v:.3f} s"
    row("wall time per round, rounds 1..N (Ray start excluded; + result files)", "per_round_s", sec)
    row("wall time per round, rounds 2..N (+ result files)", "per_round_warm_s", sec)
    row("steady-state round (rounds 2..N, round ends only)", "steady_round_s", sec)
    row("round time, median of all rounds 2..N of all runs", "round_median_s", sec)
    row("CPU time per steady round, driver + Ray workers", "cpu_per_round_tree_s", sec)
    row("CPU time per steady round, driver only", "cpu_per_round_driver_s", sec)
    row("first round (actor start-up, imports in the workers)", "first_round_s", sec)
    row("one ClientApp call, median (incl. Ray transfer)", "client_call_median_s", sec)
    row("peak memory, driver + Ray processes (PSS)", "peak_pss_tree_bytes", lambda v: f"{v / 2**20:,.0f} MiB")
    row("peak RSS of the driver", "peak_rss_driver_bytes", lambda v: f"{v / 2**20:,.0f} MiB")
    row("start-up before round 1 (prepare + ray.init + actor pool)", "startup_s", sec)
    row("  of which ray.init", "ray_init_s", sec)
    row("after the last round (fedcomp: result files)", "after_last_round_s", sec)
    row("teardown (actors, ray.shutdown, threads)", "teardown_s", sec)
    row("fixed cost per run (run total - N x steady round)", "fixed_s", sec)
    row("Python imports, once per process", "imports_s", sec)
    lines.append("")
    if s.get("pairs"):
        parts = [f"pair {i + 1}: other processes {max(e['foreign_cpu_share']) * 100:.0f} % of the CPUs, "
                 f"ratio rounds 2..N {e['per_round_warm_ratio']:.3f}" + ("" if e["clean"] else " (noisy)")
                 for i, e in enumerate(s["pairs"])]
        lines.append("Process pairs: " + "; ".join(parts) + f". Medians above use pair(s) "
                     f"{', '.join(str(i + 1) for i in s['pairs_used'])}.")
        lines.append("")
    if "wire_bytes_s_per_round_driver" in s:
        lines.append(f"wire_bytes in the driver: {s['wire_bytes_calls_per_round_driver']:.0f} calls, "
                     f"{s['wire_bytes_s_per_round_driver'] * 1e3:.1f} ms per round = "
                     f"{s['wire_bytes_share_driver'] * 100:.1f} % of a round (rounds 2..N); the clients' "
                     "ledger mod measures the same messages again in the Ray workers.")
    b = result.get("bookkeeping")
    if b:
        lines += ["", (f"In-process (no Ray, no polling), per round with {b['clients_per_round']} clients: "
                  f"server work fedcomp {b['fedcomp_server_ms']:.1f} ms vs Flower {b['flower_server_ms']:.1f} ms "
                  f"(configure {b['fedcomp_configure_ms']:.1f} vs {b['flower_configure_ms']:.1f}, aggregate "
                  f"{b['fedcomp_aggregate_ms']:.1f} vs {b['flower_aggregate_ms']:.1f}); one client call "
                  f"{b['fedcomp_client_ms']:.1f} ms vs {b['flower_client_ms']:.1f} ms "
                  f"(+{b['client_extra_ms']:.1f} ms: ledger mod, packing, decode checks).")]
    w = result.get("wire_cost", {})
    if w:
        parts = []
        for t, v in w.items():
            if not isinstance(v, dict) or "current" not in v:
                continue
            c, f = v["current"], v["no_object_id_recompute"]
            parts.append(f"{t}: {c['fresh_s'] * 1e3:.2f} ms per full-model message ({c['fresh_gbps']:.2f} "
                         f"GB/s); inside `no_object_id_recompute()` {f['fresh_s'] * 1e3:.2f} ms "
                         f"(same bytes: {v['same_result']})")
        lines += ["", "wire_bytes cost: " + "; ".join(parts) + "."]
    lines.append("")
    sw = s.get("sweep")
    if sw:
        lines += [(f"**Start-up cost in a {sw['runs']}-run sweep** (each run {sw['rounds_per_run']} rounds = "
                  f"{sw['rounds_per_run_s']:.1f} s of rounds)"), "",
                  "| | fixed per run | total | fixed share |", "|---|--:|--:|--:|",
                  (f"| local Ray per run (today) | {sw['fixed_per_run_s']:.1f} s | {sw['total_s']:.0f} s | "
                  f"{sw['fixed_share'] * 100:.0f} % |")]
        sa = s.get("sweep_attached")
        if sa:
            lines.append(f"| attached to one running cluster (`engine.ray_address`) | "
                         f"{sa['fixed_per_run_s']:.1f} s | {sa['total_s']:.0f} s (incl. cluster start "
                         f"{sa['cluster_start_once_s']:.1f} s) | {sa['fixed_share'] * 100:.0f} % |")
        lines.append("")
    lines += _targets_md(result.get("targets", []), "Overhead target")
    return "\n".join(lines)


def write_markdown(out_dir: str | Path, echo: Callable[[str], None] = print) -> str:
    """``bench.md`` from whatever JSON results ``out_dir`` holds; printed and returned."""
    out_dir = Path(out_dir)
    parts = ["## fedcomp benchmarks", ""]
    for name, render in (("codecs.json", codecs_markdown), ("overhead.json", overhead_markdown)):
        path = out_dir / name
        if path.exists():
            parts += [render(json.loads(path.read_text())), ""]
    text = "\n".join(parts).rstrip() + "\n"
    (out_dir / "bench.md").write_text(text)
    echo(text)
    return text


# ======================================================================================
# CLI
# ======================================================================================
def _parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def _add_codec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="1M,4M,16M,64M",
                   help="flat vector sizes (K/M = 2^10/2^20 elements), comma separated")
    p.add_argument("--models", default="pythia14m,mnist", help="task state dicts ('' for none)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    p.add_argument("--repeats-large", type=int, default=5, help="repeats above 32M elements")
    p.add_argument("--compressors", default=None, help="config names (default: all)")
    p.add_argument("--no-references", action="store_true", help="skip the torch references")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument("--energy-seeds", type=int, default=ENERGY_SEEDS)


def _add_overhead_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=30,
                   help="rounds per simulation (30: enough steady rounds to average out "
                        "Flower's 0.1 s polling)")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=2, help="simulations per process (sweep-like)")
    p.add_argument("--no-reuse", action="store_true", help="skip the attached-cluster runs")
    p.add_argument("--pairs", type=int, default=2, help="fedcomp/Flower process pairs")
    p.add_argument("--sweep-runs", type=int, default=12)
    p.add_argument("--sweep-rounds", type=int, default=10, help="rounds per run of the sweep estimate")
    p.add_argument("--profile", action="store_true",
                   help="one more process per mode with the ServerApp thread under cProfile")
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip further overhead pairs once this many seconds are likely exceeded")


def _codecs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return run_codecs(
        sizes=[_parse_size(s) for s in args.sizes.split(",") if s.strip()],
        models=[m for m in args.models.split(",") if m.strip()],
        repeats=args.repeats, repeats_large=args.repeats_large,
        compressors=args.compressors.split(",") if args.compressors else None,
        references=not args.no_references, memory=not args.no_memory,
        energy_seeds=args.energy_seeds, out_dir=args.out_dir,
    )


def _overhead_from_args(args: argparse.Namespace) -> dict[str, Any]:
    budget = args.budget_s
    if budget is None and args.command == "all":  # the whole benchmark: < 10 min here
        budget = max(120.0, 540.0 - (_now() - _STARTED))
    return run_overhead(rounds=args.rounds, clients=args.clients, fraction=args.fraction,
                        seed=args.seed, runs=args.runs, pairs=args.pairs, reuse=not args.no_reuse,
                        sweep_runs=args.sweep_runs, sweep_rounds=args.sweep_rounds,
                        profile=args.profile, budget_s=budget,
                        out_dir=args.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{codecs,overhead,all}")
    for name, helptext in (("codecs", "codec speed, size, memory and error vs torch references"),
                           ("overhead", "fedcomp vs plain Flower per-round time, memory, start-up"),
                           ("all", "codecs, then overhead, then bench.md")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--out-dir", default=str(DEFAULT_OUT), help="where the JSON and bench.md go")
        if name in ("codecs", "all"):
            _add_codec_args(p)
        if name in ("overhead", "all"):
            _add_overhead_args(p)
    child = sub.add_parser("_overhead-child")  # one simulation process of `overhead`
    child.add_argument("--mode", choices=("fedcomp", "flower"), required=True)
    child.add_argument("--rounds", type=int, required=True)
    child.add_argument("--clients", type=int, required=True)
    child.add_argument("--fraction", type=float, required=True)
    child.add_argument("--seed", type=int, default=0)
    child.add_argument("--runs", type=int, default=1)
    child.add_argument("--ray-address", default=None)
    child.add_argument("--out", required=True)
    child.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "_overhead-child":
        overhead_child(args.mode, args.rounds, args.clients, args.fraction, args.seed, args.runs,
                       args.ray_address, args.out, args.profile)
        return 0
    global _STARTED
    _STARTED = start = _now()
    if args.command in ("codecs", "all"):
        _codecs_from_args(args)
    if args.command in ("overhead", "all"):
        _overhead_from_args(args)
    write_markdown(args.out_dir)
    print(f"results in {args.out_dir} ({_now() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray workers unpickle the plain Flower
    # app's functions by reference to ``benchmarks.bench``.
    from benchmarks.bench import main as _main

    sys.exit(_main())
