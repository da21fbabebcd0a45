"""Central pretraining on a task's public split: ``python -m fedcomp.pretrain task=mnist``.

Trains ``task.initial_model()`` (a fresh model, or ``task.checkpoint`` when set) on
``task.public_dataset()`` — disjoint from the client pool and the test split — for
``pretrain.epochs`` (``pretrain.steps`` caps optimizer steps), evaluates it on
``task.test_dataset()``, and saves the state dict atomically to ``pretrain.output``
(default ``results/checkpoints/<task name>.pt``) with a ``.json`` sidecar of the
settings and metrics. A federated run then starts from it with
``task.checkpoint=<path>``.

Options (``conf/pretrain.yaml``, which extends ``conf/config.yaml``): ``pretrain.epochs``,
``pretrain.steps``, ``pretrain.output``, plus ``seed`` and any ``task.*`` override.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from fedcomp.core.errors import ConfigError
from fedcomp.core.files import write_json
from fedcomp.core.instantiate import instantiate_checked
from fedcomp.tasks.checkpoint import save_checkpoint


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Run central pretraining as configured; return a summary dict (also written as JSON)."""
    pcfg = cfg.get("pretrain") or {}
    epochs = int(pcfg.get("epochs", 10))
    steps = pcfg.get("steps")
    if epochs < 1:
        raise ConfigError(f"pretrain.epochs: must be an integer >= 1, got {epochs}")
    if steps is not None and int(steps) < 1:
        raise ConfigError(f"pretrain.steps: must be an integer >= 1 or null, got {steps}")
    seed = int(cfg.get("seed", 0))

    try:
        task = instantiate_checked(cfg.task, "task")
    except ValueError as err:  # the task's own check of its settings
        raise ConfigError(str(err)) from None
    torch.manual_seed(seed)
    model = task.initial_model()
    public = task.public_dataset()
    test = task.test_dataset()
    start = time.perf_counter()
    train_metrics = task.train(model, public, epochs, None if steps is None else int(steps), seed)
    test_metrics = task.evaluate(model, test)
    seconds = time.perf_counter() - start

    output = Path(pcfg.get("output") or f"results/checkpoints/{task.name}.pt")
    path = save_checkpoint(model, output)
    summary = {
        "task": task.describe(),
        "checkpoint": str(path),
        "seed": seed,
        "epochs": epochs,
        "steps": steps,
        "public_examples": len(public),
        "test_examples": len(test),
        "train": train_metrics,
        "test": test_metrics,
        "seconds": seconds,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    write_json(path.with_name(path.name + ".json"), summary)
    shown = {k: round(v, 4) for k, v in test_metrics.items() if k in ("accuracy", "perplexity", "loss")}
    print(f"checkpoint: {path}")
    print(f"test ({len(test)} examples): " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    print(f"use it with: python -m fedcomp.run task={task.name} task.checkpoint={path}")
    return summary


@hydra.main(config_path="../conf", config_name="pretrain", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        pretrain(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
