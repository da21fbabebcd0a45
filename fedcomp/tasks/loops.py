"""The one local training loop every task uses, and its optimizer choice.

Reproducible given ``seed``: the batch order comes from ``torch.randperm`` on a
``torch.Generator`` seeded with ``seed`` (what a shuffling ``DataLoader`` does, without
its per-item overhead); ``torch.manual_seed(seed)`` covers any other randomness
(dropout). Only parameters with ``requires_grad`` are optimised, so frozen layers and
frozen base weights stay put.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def make_optimizer(
    params: list[torch.nn.Parameter],
    optimizer: str,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw``; anything else is an error."""
    name = optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"task.optimizer={optimizer!r} is not one of: sgd, adam, adamw")


def train_loop(
    model: nn.Module,
    num_examples: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    *,
    epochs: int,
    steps: int | None,
    seed: int,
    batch_size: int,
) -> dict[str, float]:
    """Mini-batch training over ``num_examples`` examples; ``batch_loss(indices)`` is a batch's mean loss.

    ``make(params)`` builds the optimizer (a fresh one per call, i.e. per round);
    ``steps`` caps the optimizer steps.

    Returns
    -------
    dict
        ``num_examples`` (the FedAvg weight), ``train_loss`` (example-weighted mean over
        the batches trained on) and ``num_steps``.
    """
    if epochs < 0:
        raise ValueError(f"client.local_epochs={epochs} must be >= 0")
    if steps is not None and steps < 0:
        raise ValueError(f"client.local_steps={steps} must be >= 0 or null")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make(params) if params else None
    model.train()
    total, seen, done = 0.0, 0, 0
    for _ in range(epochs):
        if num_examples == 0 or (steps is not None and done >= steps):
            break
        perm = torch.randperm(num_examples, generator=gen)
        for start in range(0, num_examples, batch_size):
            if steps is not None and done >= steps:
                break
            idx = perm[start : start + batch_size]
            loss = batch_loss(idx)
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            done += 1
    return {
        "num_examples": float(num_examples),
        "train_loss": total / seen if seen else float("nan"),
        "num_steps": float(done),
    }
