"""``python -m fedcomp.formula``: the bandwidth formula for a model size or a task's model.

Defaults reproduce the lesson: Pythia-14M, 2 clients, 1 round, "212 MB" by the
lesson's rounding (see :mod:`fedcomp.core.formula`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedcomp.core.formula import Estimate, model_bytes, render


def task_model_bytes(task_name: str, freeze: Sequence[str] = ()) -> tuple[int, str]:
    """Build a task's model (offline) and sum what is sent; frozen name globs excluded."""
    from fnmatch import fnmatch

    from fedcomp.config import load_task

    task = load_task(task_name)
    model = task.build_model()
    state = model.state_dict()
    sent = {k: v for k, v in state.items() if not any(fnmatch(k, p) for p in freeze)}
    if freeze and len(sent) == len(state):
        raise ValueError(f"--freeze: patterns {list(freeze)} match no parameter of {task_name}")
    params = sum(int(v.numel()) for v in sent.values())
    label = f"{task_name}: {params:,} values in {len(sent)} tensors"
    return model_bytes(sent.values()), label


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fedcomp.formula",
        description="Bandwidth of a federated run by the formula "
        "(defaults: the lesson's Pythia-14M, 2 clients, 1 round).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--model-bytes", type=int, help="size of the model sent down, in bytes")
    size.add_argument(
        "--task", default=None, help="derive the size from a task's model (conf/task/NAME.yaml)"
    )
    parser.add_argument("--bytes-up", type=int, default=None, help="update size (default: = down)")
    parser.add_argument("--freeze", nargs="*", default=[], help="glob patterns not sent")
    parser.add_argument("--num-clients", type=int, default=2)
    parser.add_argument("--fraction-fit", type=float, default=1.0)
    parser.add_argument("--fraction-evaluate", type=float, default=0.0)
    parser.add_argument("--num-rounds", type=int, default=1)
    parser.add_argument("--min-fit-clients", type=int, default=1)
    parser.add_argument(
        "--lesson-rounding",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also print the lesson's figure (sizes floored to whole MiB, called MB)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.model_bytes is not None:
            bytes_down, label = args.model_bytes, ""
        else:
            bytes_down, label = task_model_bytes(args.task or "pythia14m", args.freeze)
        bytes_up = bytes_down if args.bytes_up is None else args.bytes_up
        estimate = Estimate(
            bytes_down=bytes_down,
            bytes_up=bytes_up,
            num_clients=args.num_clients,
            fraction_fit=args.fraction_fit,
            fraction_evaluate=args.fraction_evaluate,
            num_rounds=args.num_rounds,
            min_fit_clients=args.min_fit_clients,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(estimate, args.lesson_rounding, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
