"""The overhead benchmark's Markdown: per engine fedcomp vs plain Flower, the sweeps, the profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.common import fmt, header, targets_markdown

_SECONDS = ("steady_round_s", "round_median_s", "cpu_per_round_driver_s", "to_first_round_end_s",
            "after_last_round_s", "fixed_s")
_LABELS = {
    "steady_round_s": "wall time per steady round (rounds 2..N)",
    "round_median_s": "median round (rounds 2..N, all runs pooled)",
    "cpu_per_round_driver_s": "CPU per steady round, driver process",
    "to_first_round_end_s": "call to the end of round 1 (start-up + round 1)",
    "after_last_round_s": "after the last round (result files, teardown)",
    "fixed_s": "fixed cost per run (run total - N x steady round)",
    "peak_pss_tree_bytes": "peak memory, driver + its processes (PSS)",
    "peak_rss_driver_bytes": "peak RSS of the driver",
}


def _engine_table(engine: str, s: dict[str, Any]) -> list[str]:
    lines = [f"**{engine}** ({s['pairs']} process pair(s), {s['clean_pairs']} clean)", "",
             "| | fedcomp (full ledger) | plain Flower FedAvg | fedcomp / Flower |", "|---|--:|--:|--:|"]

    def row(key: str, show: Callable[[float], str]) -> None:
        a, b = s.get(f"fedcomp_{key}"), s.get(f"flower_{key}")
        ratio = a / b if a is not None and b else None
        lines.append(f"| {_LABELS[key]} | {show(a) if a is not None else '–'} | "
                     f"{show(b) if b is not None else '–'} | {fmt(ratio, '.3f')} |")

    for key in _SECONDS:
        row(key, lambda v: f"{v:.3f} s")
    for key in ("peak_pss_tree_bytes", "peak_rss_driver_bytes"):
        row(key, lambda v: f"{v / 2**20:,.0f} MiB")
    return lines + [""]


def _profile_table(profile: dict[str, Any]) -> list[str]:
    lines = [("**Where fedcomp's round goes** (one in-process run under cProfile; ms per round, fedcomp's "
              "own functions by cumulative time)"), ""]
    for side in ("server", "client"):
        lines += [f"{side} thread:", "", "| function | calls / round | cumulative ms / round | own ms / round |",
                  "|---|--:|--:|--:|"]
        lines += [(f"| `{r['function']}` | {r['calls_per_round']:.1f} | {r['cumtime_ms_per_round']:.2f} | "
                   f"{r['tottime_ms_per_round']:.2f} |") for r in profile["fedcomp"][f"{side}_fedcomp_cumtime"]]
        lines.append("")
    return lines


def overhead_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of one ``overhead.json``."""
    st = result["settings"]
    lines = [f"### Tracking overhead — `{result['command']}`", "", header(result["machine"]), "",
             (f"{st['task']}, identity compressor, {st['clients']} clients, fraction_fit {st['fraction_fit']}, "
              f"{st['rounds']} rounds, central evaluation every round; each (engine, mode) in a fresh process "
              f"running {st['runs_per_process']} simulations one after another; medians over runs."), ""]
    for engine, s in result["summary"].items():
        lines += _engine_table(engine, s)
    if result["sweeps"]:
        lines += [("**The README's sweep against one of its runs** (fresh `python -m fedcomp.run` processes, "
                   "back to back)"), "", "| engine | one 5-round run | 12-run sweep | sweep / run |", "|---|--:|--:|--:|"]
        lines += [f"| {sw['engine']} | {sw['single_s']:.1f} s | {sw['sweep_s']:.1f} s | {sw['ratio']:.2f} |"
                  for sw in result["sweeps"]] + [""]
    if "profile" in result:
        lines += _profile_table(result["profile"])
    lines += targets_markdown(result["targets"], "Overhead targets")
    return "\n".join(lines)
