"""``python -m benchmarks {codecs,overhead,all}``: run, write JSON, print and write Markdown.

``codecs``    every compressor config's speed, size, memory and error (:mod:`benchmarks.codecs`)
``overhead``  fedcomp vs plain Flower per round and in memory, per engine; the README
              sweep's cost (:mod:`benchmarks.overhead`)
``all``       both, then ``bench.md``

Run it from the repository root. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.codecs import ENERGY_SEEDS, SCALING_COMPRESSORS, run_codecs
from benchmarks.codecs_report import codecs_markdown
from benchmarks.common import DEFAULT_OUT
from benchmarks.overhead import ENGINES, MODES, overhead_child, run_overhead
from benchmarks.overhead_report import overhead_markdown
from fedcomp.core.files import write_text


def write_markdown(out_dir: str | Path) -> str:
    """``bench.md`` from the JSON results ``out_dir`` holds; returned."""
    parts = ["## fedcomp benchmarks", ""]
    for name, render in (("codecs.json", codecs_markdown), ("overhead.json", overhead_markdown)):
        path = Path(out_dir) / name
        if path.exists():
            parts += [render(json.loads(path.read_text())), ""]
    text = "\n".join(parts).rstrip() + "\n"
    write_text(Path(out_dir) / "bench.md", text)
    return text


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{codecs,overhead,all}")
    for name, text in (("codecs", "codec speed, size, memory and error vs torch references"),
                       ("overhead", "fedcomp vs plain Flower per round and memory; sweep cost"),
                       ("all", "codecs, then overhead, then bench.md")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--out-dir", default=str(DEFAULT_OUT), help="where the JSON and bench.md go")
        if name in ("codecs", "all"):
            cmd.add_argument("--sizes", default="1M,4M,16M,64M", help="flat vector sizes (K/M = 2^10/2^20)")
            cmd.add_argument("--models", default="pythia14m,mnist", help="task state dicts ('' for none)")
            cmd.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
            cmd.add_argument("--repeats-large", type=int, default=5, help="repeats above 32M elements")
            cmd.add_argument("--compressors", default=None, help="config names (default: all)")
            cmd.add_argument("--scaling-compressors", default=",".join(SCALING_COMPRESSORS),
                             help="of those, the ones also run on the flat vectors ('all' for every one)")
            cmd.add_argument("--energy-seeds", type=int, default=ENERGY_SEEDS)
            cmd.add_argument("--no-references", action="store_true", help="skip the torch references")
            cmd.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
        if name in ("overhead", "all"):
            cmd.add_argument("--rounds", type=int, default=30)
            cmd.add_argument("--clients", type=int, default=10)
            cmd.add_argument("--fraction", type=float, default=0.5)
            cmd.add_argument("--seed", type=int, default=0)
            cmd.add_argument("--task", default="mnist")
            cmd.add_argument("--runs", type=int, default=2, help="simulations per process")
            cmd.add_argument("--pairs", type=int, default=2, help="fedcomp/Flower process pairs per engine")
            cmd.add_argument("--engines", default=",".join(ENGINES), help="engines to compare on")
            cmd.add_argument("--sweep-engines", default="inprocess",
                             help="engines to time the README sweep on ('' for none)")
            cmd.add_argument("--profile", action="store_true", help="profile one fedcomp run's round")
    child = sub.add_parser("_overhead-child")  # one process of `overhead`
    child.add_argument("--mode", choices=MODES, required=True)
    child.add_argument("--engine", choices=ENGINES, required=True)
    for flag, kind in (("--rounds", int), ("--clients", int), ("--fraction", float), ("--seed", int),
                       ("--runs", int)):
        child.add_argument(flag, type=kind, required=True)
    child.add_argument("--task", default="mnist")
    child.add_argument("--out", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "_overhead-child":
        overhead_child(args.mode, args.engine, args.rounds, args.clients, args.fraction, args.seed,
                       args.runs, args.out, args.task)
        return 0
    start = time.perf_counter()
    if args.command in ("codecs", "all"):
        run_codecs(sizes=[_size(s) for s in _names(args.sizes)], models=_names(args.models),
                   repeats=args.repeats, repeats_large=args.repeats_large,
                   compressors=_names(args.compressors) if args.compressors else None,
                   scaling_compressors=None if args.scaling_compressors == "all" else _names(args.scaling_compressors),
                   references=not args.no_references, memory=not args.no_memory,
                   energy_seeds=args.energy_seeds, out_dir=args.out_dir)
    if args.command in ("overhead", "all"):
        run_overhead(rounds=args.rounds, clients=args.clients, fraction=args.fraction, seed=args.seed,
                     runs=args.runs, pairs=args.pairs, engines=_names(args.engines),
                     sweep_engines=_names(args.sweep_engines), profile=args.profile, task=args.task,
                     out_dir=args.out_dir)
    print(write_markdown(args.out_dir))
    print(f"results in {args.out_dir} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
