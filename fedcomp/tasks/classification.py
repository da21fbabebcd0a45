"""Train and evaluate loops shared by the image-classification tasks (mnist, digits, hf).

Seeded, stratified splits; a seeded shuffle per epoch (``torch.randperm`` on a
``torch.Generator``); only parameters with ``requires_grad`` are optimised, so frozen
layers stay put.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, Features, List, Value
from torch import nn

from fedcomp.tasks.base import Task
from fedcomp.tasks.loops import make_optimizer, train_loop


def stratified_split(
    labels: np.ndarray, sizes: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into named, disjoint, class-stratified parts.

    ``sizes`` maps split names to sizes; the last remaining indices form ``"pool"``.
    Each class contributes to a split in proportion to its frequency (largest-remainder
    rounding), so a 1,000-example test split of balanced MNIST holds 100 per class.
    Indices inside every split are shuffled with ``seed``.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    taken = {c: 0 for c in classes}
    out: dict[str, np.ndarray] = {}
    n = len(labels)
    for name, size in sizes.items():
        if size < 0:
            raise ValueError(f"split size {name}={size} must be >= 0")
        remaining = {c: len(by_class[c]) - taken[c] for c in classes}
        if size > sum(remaining.values()):
            raise ValueError(
                f"split sizes {sizes} exceed the {n} available examples"
            )
        # largest-remainder apportionment of `size` over classes, by class frequency
        exact = {c: size * np.sum(labels == c) / n for c in classes}
        alloc = {c: min(int(math.floor(exact[c])), remaining[c]) for c in classes}
        order = sorted(classes, key=lambda c: (-(exact[c] - math.floor(exact[c])), c))
        short = size - sum(alloc.values())
        while short > 0:
            progressed = False
            for c in order:
                if short and alloc[c] < remaining[c]:
                    alloc[c] += 1
                    short -= 1
                    progressed = True
            if not progressed:  # pragma: no cover - guarded by the size check above
                break
        idx = []
        for c in classes:
            idx.append(by_class[c][taken[c] : taken[c] + alloc[c]])
            taken[c] += alloc[c]
        out[name] = rng.permutation(np.concatenate(idx)) if idx else np.array([], int)
    rest = np.concatenate([by_class[c][taken[c] :] for c in classes])
    out["pool"] = rng.permutation(rest)
    return out


def image_splits(
    x: np.ndarray, y: np.ndarray, test_size: int, public_size: int, split_seed: int
) -> dict[str, Dataset]:
    """Flattened images ``x`` and labels ``y`` as the ``test``/``public``/``pool`` datasets.

    The split is :func:`stratified_split`; each example has the columns ``image``
    (float32, one row of ``x``) and ``label`` (int64).
    """
    parts = stratified_split(y, {"test": test_size, "public": public_size}, split_seed)
    features = Features({"image": List(Value("float32"), length=x.shape[1]), "label": Value("int64")})
    return {
        name: Dataset.from_dict({"image": x[idx], "label": y[idx]}, features=features)
        for name, idx in parts.items()
    }


def to_arrays(data: Dataset, x_column: str, y_column: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a whole (small) dataset into float32 inputs and int64 labels."""
    if len(data) == 0:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    cols = data.with_format("numpy", columns=[x_column, y_column])[:]
    x = torch.from_numpy(np.ascontiguousarray(cols[x_column], dtype=np.float32))
    y = torch.from_numpy(np.asarray(cols[y_column], dtype=np.int64))
    return x, y


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    steps: int | None,
    seed: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> dict[str, float]:
    """Mini-batch cross-entropy training (:func:`fedcomp.tasks.loops.train_loop`)."""
    return train_loop(
        model, len(y), lambda idx: F.cross_entropy(model(x[idx]), y[idx]),
        lambda params: make_optimizer(params, optimizer, lr, momentum, weight_decay),
        epochs=epochs, steps=steps, seed=seed, batch_size=batch_size,
    )


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Mean cross-entropy ``loss``, ``accuracy`` and ``num_examples`` over ``(x, y)``."""
    model.eval()
    n = len(y)
    if n == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "num_examples": 0.0}
    loss_sum, correct = 0.0, 0
    for start in range(0, n, batch_size):
        logits = model(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    return {"loss": loss_sum / n, "accuracy": correct / n, "num_examples": float(n)}


class ImageClassificationTask(Task):
    """What the image tasks share: optimizer settings, fixed splits, CNN widths, loops.

    Subclasses set ``name``, load their fixed splits in :meth:`_splits` (keys ``pool``,
    ``test``, ``public``) and build their model in ``build_model``.

    Parameters
    ----------
    lr, momentum, weight_decay, optimizer
        Local optimizer (``sgd`` | ``adam`` | ``adamw``); a fresh optimizer per round.
    batch_size
        Local mini-batch size.
    checkpoint
        Optional ``torch.save``d state dict the global model starts from
        (``python -m fedcomp.pretrain task=<name>`` writes one).
    test_size, public_size, split_seed
        The fixed stratified split of the data (pool = the rest); ``split_seed`` is
        independent of the run's seed so the test set never changes between runs.
    channels1, channels2, hidden
        CNN widths.
    """

    label_column = "label"

    def __init__(
        self,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        optimizer: str = "sgd",
        batch_size: int = 32,
        checkpoint: str | None = None,
        test_size: int = 1000,
        public_size: int = 500,
        split_seed: int = 0,
        channels1: int = 8,
        channels2: int = 16,
        hidden: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"task.batch_size={batch_size} must be >= 1")
        if lr <= 0:
            raise ValueError(f"task.lr={lr} must be > 0")
        if public_size < 0 or test_size < 0:
            raise ValueError("task.public_size and task.test_size must be >= 0")
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, lr)  # validates name
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.checkpoint = checkpoint
        self.test_size = int(test_size)
        self.public_size = int(public_size)
        self.split_seed = int(split_seed)
        self.channels1, self.channels2, self.hidden = int(channels1), int(channels2), int(hidden)

    @abstractmethod
    def _splits(self) -> dict[str, Any]:
        """The fixed ``pool``/``test``/``public`` splits (cached by the subclass)."""

    def client_dataset(self) -> Dataset:
        return self._splits()["pool"]

    def test_dataset(self) -> Dataset:
        return self._splits()["test"]

    def public_dataset(self) -> Dataset:
        return self._splits()["public"]

    def _xy(self, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and label tensors of a split."""
        return to_arrays(data, "image", self.label_column)

    def train(
        self, model: nn.Module, data: Dataset, epochs: int, steps: int | None, seed: int
    ) -> dict[str, float]:
        x, y = self._xy(data)
        return train_classifier(
            model, x, y, epochs=epochs, steps=steps, seed=seed,
            batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
            momentum=self.momentum, weight_decay=self.weight_decay,
        )

    def evaluate(self, model: nn.Module, data: Dataset) -> dict[str, float]:
        x, y = self._xy(data)
        return evaluate_classifier(model, x, y)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
            "batch_size": self.batch_size,
        }
