"""Tracking overhead: fedcomp against a plain Flower app, per steady round and in memory.

The same federation (mnist CNN, identity compressor, 10 clients, ``fraction_fit`` 0.5,
central evaluation every round) runs as

- **fedcomp**: ``fedcomp.engines.launch.execute`` with the full ledger;
- **plain Flower**: a ``flwr.serverapp.strategy.FedAvg`` ServerApp and a quickstart-style
  ClientApp written here: same task, partitions, training (same seeds) and central
  evaluation, no compressor, no ledger, no partition query;

on each engine: the in-process engine (``fedcomp.engines.inprocess.run_inprocess``,
rounds without polling: the fedcomp-side cost shows undiluted) and Flower's Ray
Simulation Engine (``flwr.simulation.run_simulation``: what a user of Flower sees).
Each (engine, mode) runs in a fresh process, ``runs`` simulations one after another
as a Hydra sweep does; the modes alternate in process pairs.

Nothing of fedcomp is patched. A fedcomp round ends when its round line is printed
(stdout goes through fedcomp's own ``LineWriter``, which timestamps it); a plain round
ends when its ``evaluate_fn`` runs, at the same point of the round.

Also measured here: the README's sweep against one of its runs, back to back, per
engine (``sweep_cost``), and a profile of fedcomp's per-message path
(``profile_fedcomp``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_OUT, ROOT, TreeMemorySampler, machine_info, median, peak_rss_bytes, system_busy_s
from fedcomp.config import compose_config, to_container
from fedcomp.core.env import quiet_environment
from fedcomp.core.files import write_json
from fedcomp.core.seeds import derive_seed
from fedcomp.engines.progress import ROUND_LINE, LineWriter

ENGINES = ("inprocess", "simulation")
MODES = ("fedcomp", "flower")
TARGET_RATIO = 1.05
TARGET_SWEEP = 3.0
#: A process pair counts as clean when other processes used at most this share of the CPUs.
FOREIGN_MAX = 0.15


def overhead_config(engine: str, rounds: int, clients: int, fraction: float, seed: int,
                    output_dir: str, task: str = "mnist") -> dict[str, Any]:
    """The resolved fedcomp config both modes run (the plain app reads the same keys)."""
    return to_container(compose_config([
        f"task={task}", "compressor=none", f"engine={engine}", f"federation.num_clients={clients}",
        f"federation.fraction_fit={fraction}", "federation.fraction_evaluate=0.0",
        f"federation.num_rounds={rounds}", f"seed={seed}", "resume=false", f"output_dir={output_dir}",
    ]))


# ------------------------------------------------------------------ round clock
class RoundClock:
    """Wall time and this process's CPU time at the end of each round."""

    def __init__(self) -> None:
        self.ends: dict[int, tuple[float, float]] = {}

    def round_end(self, server_round: int) -> None:
        self.ends[server_round] = (time.perf_counter(), time.process_time())


# ------------------------------------------------------------------ the plain Flower app
@functools.lru_cache(maxsize=2)
def _plain_task(task_json: str) -> Any:
    from hydra.utils import instantiate

    return instantiate(json.loads(task_json), _convert_="all")


def plain_train(cfg: dict[str, Any], msg: Any, context: Any) -> Any:
    """Flower quickstart-style train: load the arrays, train, reply with the weights."""
    import torch
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    from fedcomp.tasks.partitions import load_partitions

    torch.set_num_threads(1)
    task = _plain_task(json.dumps(cfg["task"], sort_keys=True))
    pid = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    seed = int(cfg["seed"])
    data = load_partitions(task, cfg["partition"], int(cfg["federation"]["num_clients"]), seed)[pid]
    model = task.build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    train_seed = derive_seed(seed, server_round, pid, 1)
    torch.manual_seed(train_seed)
    metrics = task.train(model, data, epochs=int(cfg["client"]["local_epochs"]),
                         steps=cfg["client"].get("local_steps"), seed=train_seed)
    record = {k: float(v) for k, v in metrics.items()}
    record["num-examples"] = float(len(data))
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(record)})
    return Message(content=content, reply_to=msg)


def plain_flower_apps(cfg: dict[str, Any], clock: RoundClock) -> tuple[Any, Any]:
    """A plain Flower 1.42 FedAvg ServerApp and ClientApp for ``cfg``'s federation."""
    import torch
    from flwr.app import ArrayRecord, Context, Message, MetricRecord
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        return plain_train(cfg, msg, context)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        task = _plain_task(json.dumps(cfg["task"], sort_keys=True))
        fed = cfg["federation"]
        torch.manual_seed(derive_seed(int(cfg["seed"]), 0, 0, 0))
        test = task.test_dataset()

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            net = task.build_model()
            net.load_state_dict(arrays.to_torch_state_dict())
            metrics = MetricRecord({k: float(v) for k, v in task.evaluate(net, test).items()})
            if server_round > 0:
                clock.round_end(server_round)
            return metrics

        strategy = FedAvg(fraction_train=float(fed["fraction_fit"]), fraction_evaluate=0.0,
                          min_train_nodes=int(fed["min_fit_clients"]), min_available_nodes=int(fed["num_clients"]))
        strategy.start(grid=grid, initial_arrays=ArrayRecord(task.initial_model().state_dict()),
                       num_rounds=int(fed["num_rounds"]), evaluate_fn=evaluate_fn)

    return server_app, client_app


# ------------------------------------------------------------------ one run, one process
@contextlib.contextmanager
def quiet_flower_logs() -> Iterator[None]:
    """Flower's logger at ERROR meanwhile, as fedcomp's engines set it (no per-round INFO lines)."""
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        flwr_logger.setLevel(previous)


def run_once(mode: str, cfg: dict[str, Any], clock: RoundClock) -> None:
    """One simulation of ``mode`` on ``cfg["engine"]["name"]``; round ends go to ``clock``."""
    if mode == "fedcomp":
        from fedcomp.engines.launch import execute

        def stamp(line: str) -> None:  # fedcomp prints one line per round, at its end
            if match := ROUND_LINE.match(line):
                clock.round_end(int(match.group(1)))

        with contextlib.redirect_stdout(LineWriter(stamp)):
            execute(cfg)
        return
    server_app, client_app = plain_flower_apps(cfg, clock)
    clients = int(cfg["federation"]["num_clients"])
    with quiet_flower_logs():
        if cfg["engine"]["name"] == "inprocess":
            from fedcomp.engines.inprocess import run_inprocess

            run_inprocess(server_app, client_app, clients)
        else:
            from flwr.simulation import run_simulation

            from fedcomp.engines.simulation import backend_config

            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                           backend_config=backend_config(cfg["engine"]), verbose_logging=False)


def derive_run(call_start: float, call_end: float, ends: dict[int, tuple[float, float]],
               rounds: int) -> dict[str, Any]:
    """Durations (seconds) of one run from its call times and round ends."""
    if sorted(ends) != list(range(1, rounds + 1)):
        return {"error": f"round ends seen: {sorted(ends)}, expected 1..{rounds}"}
    wall = {r: e[0] for r, e in ends.items()}
    steady = (wall[rounds] - wall[1]) / (rounds - 1) if rounds > 1 else float("nan")
    out = {
        "to_first_round_end_s": wall[1] - call_start,
        "steady_round_s": steady,
        "round_s": [wall[r] - wall[r - 1] for r in range(2, rounds + 1)],
        "after_last_round_s": call_end - wall[rounds],
        "run_total_s": call_end - call_start,
        "fixed_s": call_end - call_start - rounds * steady,
    }
    if rounds > 1:  # the driver process: everything on the in-process engine, no Ray worker
        out["cpu_per_round_driver_s"] = (ends[rounds][1] - ends[1][1]) / (rounds - 1)
    return out


def overhead_child(mode: str, engine: str, rounds: int, clients: int, fraction: float, seed: int,
                   runs: int, out: str, task: str = "mnist") -> dict[str, Any]:
    """One benchmark process: ``runs`` simulations in a row; writes its JSON to ``out``."""
    started = time.perf_counter()
    busy = system_busy_s()
    quiet_environment()
    sampler = TreeMemorySampler()
    sampler.start()
    results = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="fcbench-")
        try:
            cfg = overhead_config(engine, rounds, clients, fraction, seed, tmp, task)
            clock = RoundClock()
            call_start = time.perf_counter()
            run_once(mode, cfg, clock)
            results.append(derive_run(call_start, time.perf_counter(), clock.ends, rounds))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    peak = sampler.stop()
    process_s = time.perf_counter() - started
    ours = sampler.tree_cpu_s
    data = {"mode": mode, "engine": engine, "rounds": rounds, "clients": clients, "runs": results, "peak_pss_tree_bytes": peak, "peak_rss_driver_bytes": peak_rss_bytes(),
            "process_s": process_s,
            "foreign_cpu_share": max(0.0, system_busy_s() - busy - ours) / (process_s * (os.cpu_count() or 1))}
    write_json(out, data)
    return data


def _run_child(mode: str, engine: str, rounds: int, clients: int, fraction: float, seed: int, runs: int,
               task: str, timeout: float = 1800) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fcbench-") as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, "-m", "benchmarks", "_overhead-child", "--mode", mode, "--engine", engine,
               "--rounds", str(rounds), "--clients", str(clients), "--fraction", str(fraction),
               "--seed", str(seed), "--runs", str(runs), "--task", task, "--out", str(out)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"overhead child ({engine}, {mode}) failed with {done.returncode}:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return json.loads(out.read_text())


# ------------------------------------------------------------------ summaries
def summarize(children: list[dict], engine: str) -> dict[str, Any]:
    """Medians per mode and fedcomp/Flower ratios on one engine (clean process pairs only
    when there is one: other processes used at most :data:`FOREIGN_MAX` of the CPUs)."""
    mine = [c for c in children if c["engine"] == engine]
    pairs = [mine[i : i + 2] for i in range(0, len(mine) - 1, 2)]
    clean = [p for p in pairs if all(c["foreign_cpu_share"] <= FOREIGN_MAX for c in p)]
    used = clean or pairs
    s: dict[str, Any] = {"pairs": len(pairs), "clean_pairs": len(clean),
                         "foreign_cpu_share": [[c["foreign_cpu_share"] for c in p] for p in pairs]}
    for mode in MODES:
        procs = [c for p in used for c in p if c["mode"] == mode]
        runs = [r for c in procs for r in c["runs"] if "error" not in r]
        for key in ("steady_round_s", "cpu_per_round_driver_s", "to_first_round_end_s",
                    "after_last_round_s", "fixed_s", "run_total_s"):
            vals = [r[key] for r in runs if key in r]
            if vals:
                s[f"{mode}_{key}"] = median(vals)
        pooled = [x for r in runs for x in r["round_s"]]
        if pooled:
            s[f"{mode}_round_median_s"] = median(pooled)
        if procs:
            s[f"{mode}_peak_pss_tree_bytes"] = max(c["peak_pss_tree_bytes"] for c in procs)
            s[f"{mode}_peak_rss_driver_bytes"] = max(c["peak_rss_driver_bytes"] for c in procs)
    for key in ("steady_round_s", "round_median_s", "cpu_per_round_driver_s",
                "peak_pss_tree_bytes", "peak_rss_driver_bytes", "fixed_s"):
        a, b = s.get(f"fedcomp_{key}"), s.get(f"flower_{key}")
        if a is not None and b:
            s[f"{key}_ratio"] = a / b
    return s


def targets(summaries: dict[str, dict], sweeps: list[dict]) -> list[dict]:
    out = []
    for engine, s in summaries.items():
        details = {
            "steady_round_s": (f"median round {s.get('round_median_s_ratio', float('nan')):.3f}, CPU per round "
                               f"(driver) {s.get('cpu_per_round_driver_s_ratio', float('nan')):.3f}"),
            "peak_pss_tree_bytes": f"driver peak RSS {s.get('peak_rss_driver_bytes_ratio', float('nan')):.3f}",
        }
        for key, label in (("steady_round_s", "wall time per steady round"),
                           ("peak_pss_tree_bytes", "peak memory (PSS, process tree)")):
            value = s.get(f"{key}_ratio")
            if value is not None:
                out.append({"target": f"{engine}: fedcomp / plain Flower {label} <= 1.05", "value": value,
                            "threshold": TARGET_RATIO, "met": value <= TARGET_RATIO, "detail": details[key]})
    for sw in sweeps:
        out.append({"target": f"{sw['engine']}: README sweep ({sw['runs']} runs) <= 3x one run", "value": sw["ratio"],
                    "threshold": TARGET_SWEEP, "met": sw["ratio"] <= TARGET_SWEEP,
                    "detail": f"sweep {sw['sweep_s']:.1f} s, one run {sw['single_s']:.1f} s, back to back"})
    return out


# ------------------------------------------------------------------ sweeps
SWEEP_ARGS = ("task=digits", "federation.num_rounds=5")
SWEEP_GRID = ("compressor=none,topk,quant8,quant4", "seed=0,1,2")


def sweep_cost(engine: str, timeout: float = 1800) -> dict[str, Any]:
    """Wall time of the README's 12-run sweep and of one of its runs, back to back,
    each a fresh ``python -m fedcomp.run`` process on ``engine``."""
    with tempfile.TemporaryDirectory(prefix="fcsweep-") as tmp:
        def timed(*args: str) -> float:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fedcomp.run", *args], cwd=ROOT, capture_output=True,
                                  text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"fedcomp.run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
            return time.perf_counter() - start

        single = timed(*SWEEP_ARGS, "compressor=none", "seed=0", f"engine={engine}", f"hydra.run.dir={tmp}/one")
        sweep = timed("-m", *SWEEP_ARGS, *SWEEP_GRID, f"engine={engine}", f"hydra.sweep.dir={tmp}/sweep")
        runs = sum(1 for p in Path(tmp, "sweep").iterdir() if p.is_dir())
    return {"engine": engine, "runs": runs, "single_s": single, "sweep_s": sweep, "ratio": sweep / single,
            "command": "python -m fedcomp.run -m " + " ".join((*SWEEP_ARGS, *SWEEP_GRID))}


# ------------------------------------------------------------------ the benchmark
def run_overhead(rounds: int = 30, clients: int = 10, fraction: float = 0.5, seed: int = 0, runs: int = 2,
                 pairs: int = 2, engines: Sequence[str] = ENGINES, sweep_engines: Sequence[str] = ("inprocess",),
                 profile: bool = False, task: str = "mnist", out_dir: str | Path | None = DEFAULT_OUT,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """fedcomp vs plain Flower per steady round and peak memory on each engine; the sweep cost.

    Parameters
    ----------
    runs, pairs
        Simulations per process; (fedcomp, Flower) process pairs per engine.
    engines
        Engines to compare on (``inprocess``, ``simulation``).
    sweep_engines
        Engines to time the README sweep on (each: one run, then the 12-run sweep).
    profile
        Also profile one fedcomp run's per-message path (:func:`profile_fedcomp`).
    """
    from benchmarks.profile_run import profile_fedcomp

    started = time.perf_counter()
    machine = machine_info()
    echo(f"overhead: {task}, {clients} clients, fraction {fraction}, {rounds} rounds, {runs} runs/process, "
         f"{pairs} pair(s) on {', '.join(engines)}; load {machine['loadavg_1m_5m_15m']}")
    result: dict[str, Any] = {
        "benchmark": "overhead", "command": "python -m benchmarks overhead", "machine": machine,
        "settings": {"task": task, "compressor": "none", "rounds": rounds, "clients": clients,
                     "fraction_fit": fraction, "seed": seed, "runs_per_process": runs, "pairs": pairs,
                     "engines": list(engines)},
        "children": [], "sweeps": [],
    }
    for engine in engines:
        for _ in range(pairs):
            for mode in MODES:
                t0 = time.perf_counter()
                child = _run_child(mode, engine, rounds, clients, fraction, seed, runs, task)
                result["children"].append(child)
                steady = [round(r.get("steady_round_s", float("nan")), 4) for r in child["runs"]]
                echo(f"  {engine:>10} {mode:>8} x{runs}: {time.perf_counter() - t0:5.1f} s, steady round {steady}, "
                     f"other processes {child['foreign_cpu_share'] * 100:.0f} % of the CPUs")
    for engine in sweep_engines:
        result["sweeps"].append(sweep_cost(engine))
        sw = result["sweeps"][-1]
        echo(f"  sweep on {engine}: {sw['sweep_s']:.1f} s for {sw['runs']} runs, one run {sw['single_s']:.1f} s "
             f"({sw['ratio']:.2f}x)")
    if profile:
        with tempfile.TemporaryDirectory(prefix="fcprof-") as tmp:
            result["profile"] = profile_fedcomp(overhead_config("inprocess", rounds, clients, fraction, seed,
                                                                tmp, task))
        echo("  profiled one in-process fedcomp run")
    result["summary"] = {engine: summarize(result["children"], engine) for engine in engines}
    result["targets"] = targets(result["summary"], result["sweeps"])
    result["elapsed_s"] = time.perf_counter() - started
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    if out_dir is not None:
        write_json(Path(out_dir) / "overhead.json", result)
    return result
