"""The task contract shared by the client, the server and pretraining.

A task owns a model architecture, the real data it trains on, and its train/evaluate
loops. The federated layer (``fedcomp.fl``) only talks to tasks through this class, so
adding a task is one module plus one ``conf/task/*.yaml`` file with a ``_target_``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from datasets import Dataset


class Task(ABC):
    """A model, its data and its loops.

    Attributes
    ----------
    name
        Short task name recorded in results (``mnist``, ``digits``, ``pythia14m``...).
    label_column
        Column the partitioners split by (Dirichlet, pathological); ``None`` when the
        task has no labels (language modelling), in which case only IID / natural
        partitioners apply.
    checkpoint
        Optional path of a pretrained state dict (``torch.save``) or a Hugging Face
        model directory the global model starts from.
    """

    name: str = "task"
    label_column: str | None = "label"
    checkpoint: str | None = None

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """Return a freshly initialised model (the caller seeds torch first)."""

    @abstractmethod
    def client_dataset(self) -> Dataset:
        """The pool of training examples that is partitioned across clients."""

    @abstractmethod
    def test_dataset(self) -> Dataset:
        """Held-out examples for centralized evaluation (disjoint from the pool)."""

    def public_dataset(self) -> Dataset:
        """Examples for central pretraining, disjoint from the client pool and the test set."""
        raise NotImplementedError(f"task {self.name} has no public split for pretraining")

    @abstractmethod
    def train(
        self,
        model: torch.nn.Module,
        data: Dataset,
        epochs: int,
        steps: int | None,
        seed: int,
    ) -> dict[str, float]:
        """Train ``model`` in place; return metrics incl. ``num_examples`` and ``train_loss``.

        Only parameters with ``requires_grad`` are optimised (frozen layers stay put).
        ``steps`` caps the number of optimizer steps when set.
        """

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, data: Dataset) -> dict[str, float]:
        """Return metrics: ``loss`` and ``accuracy`` (classification) or ``perplexity`` (LM)."""

    def initial_model(self) -> torch.nn.Module:
        """The global model at round 0: a fresh model, or ``checkpoint`` when set."""
        model = self.build_model()
        if self.checkpoint:
            from fedcomp.tasks.checkpoint import load_checkpoint

            load_checkpoint(model, self.checkpoint)
        return model

    def describe(self) -> dict[str, Any]:
        """Settings recorded in the run summary."""
        return {"task": self.name, "checkpoint": self.checkpoint}
