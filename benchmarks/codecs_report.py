"""The codec benchmark's Markdown: one table per model, comparisons, energy, scaling, targets."""

from __future__ import annotations

from typing import Any

from benchmarks.codecs import LARGE_REGIME, size_label
from benchmarks.common import fmt, header, targets_markdown
from fedcomp.core.units import human, short


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}" if seconds >= 1e-3 else f"{seconds * 1e3:.3f}"


def _model_table(result: dict[str, Any], inp: dict[str, Any]) -> list[str]:
    rows = [r for r in result["rows"] if r["input"] == inp["name"]]
    repeats = next((r["repeats"] for r in rows if r.get("repeats")), "?")
    lines = [(f"**{inp['name']}**: {inp['numel']:,} fp32 = {human(inp['dense_bytes'])} in {inp['num_tensors']} "
              f"tensors ({inp['kind']}); median of {repeats} after a warm-up"), "",
             ("| compressor | encode ms | decode ms | encode GB/s | decode GB/s | payload | x smaller | rel. error "
              "| encode peak / input | decode peak / input | kept energy vs exact top-k |"),
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['compressor']} | {r['note']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['compressor']} | {_ms(r['encode_s'])} | {_ms(r['decode_s'])} | {fmt(r['encode_gbps'], '.2f')} | "
            f"{fmt(r['decode_gbps'], '.2f')} | {short(r['payload_bytes'])} | {fmt(r['compression_ratio'], '.1f')} | "
            f"{fmt(r.get('rel_error'), '.4f')} | {fmt(r.get('encode_peak_over_input'), '.2f')} | "
            f"{fmt(r.get('decode_peak_over_input'), '.2f')} | {fmt(r.get('kept_energy_ratio'), '.4f')} |")
    return lines + [""]


def codecs_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of one ``codecs.json``."""
    models = result["settings"]["models"]
    lines = [f"### Codecs — `{result['command']}`", "", header(result["machine"]), ""]
    for inp in result["inputs"]:
        if inp["name"] in models:
            lines += _model_table(result, inp)
    if result["comparisons"]:
        lines += [("**fedcomp vs the reference projects' way** (time ratio fedcomp / reference: < 1 is faster; "
                   "speedup = reference / fedcomp)"), "",
                  "| input | fedcomp | reference | encode ratio | encode speedup | decode ratio | payload ratio |",
                  "|---|---|---|--:|--:|--:|--:|"]
        lines += [(f"| {c['input']} | {c['fedcomp']} | {c['reference']} | {c['encode_ratio']:.3f} | "
                   f"{c['encode_speedup']:.1f}x | {c['decode_ratio']:.3f} | {c['payload_ratio']:.3f} |")
                  for c in result["comparisons"]] + [""]
    if result["energy"]:
        lines += [("**Sampled top-k: energy and count kept vs exact top-k** (sum of squares of the kept "
                   "entries, same data, one rng seed per encode)"), "",
                  "| input | selection | seeds | energy min | mean | max | kept / k |", "|---|---|--:|--:|--:|--:|--:|"]
        lines += [(f"| {e['input']} | {e['selection']} | {e['seeds']} | {e['energy_ratio_min']:.4f} | "
                   f"{e['energy_ratio_mean']:.4f} | {e['energy_ratio_max']:.4f} | "
                   f"{e['kept_over_k_min']:.4f}..{e['kept_over_k_max']:.4f} |") for e in result["energy"]] + [""]
    if result["scaling"]:
        sizes = " | ".join(size_label(n) for n in result["scaling"][0]["sizes"])
        lines += [("**Scaling on flat fp32 vectors**: ns per element, and the fitted slope of log(time) vs "
                   f"log(size) (1 = linear) over all sizes / over sizes >= {size_label(LARGE_REGIME)}"), "",
                  (f"| compressor | encode ns/el: {sizes} | slope all / large | decode ns/el: {sizes} "
                   "| slope all / large |"), "|---|" + "--:|" * (2 * len(result["scaling"][0]["sizes"]) + 2)]
        for e in result["scaling"]:
            cells = []
            for op in ("encode", "decode"):
                cells.append(" | ".join(f"{v:.2f}" for v in e[f"{op}_ns_per_element"]))
                cells.append(f"{e[f'{op}_slope']:.2f} / {fmt(e.get(f'{op}_slope_large'), '.2f')}")
            lines.append(f"| {e['compressor']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += targets_markdown(result["targets"], f"Codec targets (on {models[0] if models else '-'})")
    return "\n".join(lines)
