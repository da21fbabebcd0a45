"""``python -m fedcomp.report``: tables and figures from run, sweep or results directories.

Usage
-----
``python -m fedcomp.report RESULTS [--out DIR] [--metric accuracy] [--target 0.9]
[--final-window N] [--bytes wire|payload] [--width column|page] [--no-figures]``

``RESULTS`` is a run directory, a Hydra sweep directory or a whole ``results/`` tree;
every run below it is loaded (:mod:`fedcomp.analysis.runs`) and every directory left
out is listed with the reason, on the console and in ``skipped.csv``. The headline
metric is the mean of each run's last ``report.final_window`` rounds (its config, default
5; ``--final-window`` overrides). Writes the tables (:mod:`fedcomp.analysis.formats`)
and figures (:mod:`fedcomp.analysis.figures`) into ``--out`` (default
``RESULTS/report``). Exit code 2 when there is no usable run or an option is bad.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fedcomp.analysis import figures, formats, tables
from fedcomp.analysis.runs import ReportError, load_runs
from fedcomp.analysis.style import WIDTHS


def positive_int(text: str) -> int:
    """An integer >= 1 (``--final-window``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fedcomp.report",
        description="Tables and figures (bytes against the formula, accuracy cost) from fedcomp runs.",
    )
    parser.add_argument("results", type=Path, help="a run directory, a sweep directory or a results tree")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: RESULTS/report)")
    parser.add_argument("--metric", default="accuracy",
                        help="central metric for the headline, delta and target (default accuracy; runs "
                             "without it fall back to perplexity, then loss)")
    parser.add_argument("--target", "--target-accuracy", dest="target", type=float, default=None,
                        help="metric value for rounds/bytes to target (reached when >=; <= for loss "
                             "and perplexity); none by default")
    parser.add_argument("--final-window", type=positive_int, default=None,
                        help="rounds averaged for the headline metric (default: each run's "
                             "report.final_window, else 5)")
    parser.add_argument("--bytes", dest="measure", default="wire", choices=("wire", "payload"),
                        help="bytes on the x axis of accuracy_vs_bytes and in bytes_per_round (default wire)")
    parser.add_argument("--width", default="column", choices=tuple(WIDTHS),
                        help="figure width: column (3.3 in) or page (7 in); default column")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or args.results / "report"
    try:
        runs, skipped = load_runs(args.results)
        report = tables.build(runs, skipped, args.metric, args.target, args.final_window)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    written = formats.write_tables(report, out)
    if not args.no_figures:
        drawn, notes = figures.make_all(report, out, args.width, args.measure)
        written += drawn
        report.notes += notes
    print(f"fedcomp report: {len(report.runs)} run(s), {len(report.summary)} configuration(s) from {args.results}")
    print()
    print(formats.to_markdown(formats.view(report, report.summary, formats.SUMMARY_VIEW, with_ci=True)))
    if report.skipped:
        print(f"skipped {len(report.skipped)} directory(ies) (also in skipped.csv):")
        for item in report.skipped:
            print(f"  {item.path}: {item.reason}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
