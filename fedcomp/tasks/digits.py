"""Handwritten digits (scikit-learn's ``load_digits``): the tiny, fast task for tests
and smoke runs.

Data
----
``sklearn.datasets.load_digits()``: 1,797 real 8×8 images, grey levels 0..16, shipped
with scikit-learn (no download). Split once with a fixed ``split_seed``, stratified by
class, into ``test`` (default 300), ``public`` (default 150, for central pretraining) and
the client ``pool`` (the remaining 1,347). Columns: ``image`` (64 float32,
standardised: ``(x / 16 - 0.3053) / 0.3760``) and ``label`` (int).

Model
-----
A tiny CNN (9,802 parameters with the defaults, no buffers): parameters
``conv1.*, conv2.*, fc1.*, fc2.*``, the same names as the MNIST model so compressor
configs that select ``conv*`` / ``fc*`` work on both.
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

DIGITS_MEAN = 0.3053  # of x / 16 over all 1,797 images
DIGITS_STD = 0.3760


class DigitsCNN(nn.Module):
    """conv(1→c1, 3×3, pad 1) → ReLU → conv(c1→c2, 3×3, pad 1) → ReLU → maxpool 2
    → fc1(16·c2 → hidden) → ReLU → fc2(hidden → 10). Input ``(N, 64)`` or ``(N, 1, 8, 8)``.
    """

    def __init__(self, channels1: int = 8, channels2: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels1, 3, padding=1)
        self.conv2 = nn.Conv2d(channels1, channels2, 3, padding=1)
        self.fc1 = nn.Linear(channels2 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 8, 8)
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@functools.lru_cache(maxsize=4)
def _digits_splits(test_size: int, public_size: int, split_seed: int) -> dict[str, Dataset]:
    """Load the 1,797 digits once per process and split them (cached)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = ((np.asarray(bunch.data, dtype=np.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return image_splits(x, y, test_size, public_size, split_seed)


class DigitsTask(ImageClassificationTask):
    """scikit-learn digits, a tiny CNN, SGD with momentum.

    Parameters are those of :class:`~fedcomp.tasks.classification.ImageClassificationTask`;
    the defaults here fit the 1,797 images (300 test, 150 public, 1,347 pool).
    """

    name = "digits"

    def __init__(
        self, batch_size: int = 16, test_size: int = 300, public_size: int = 150,
        hidden: int = 32, **common: Any,
    ) -> None:
        super().__init__(
            batch_size=batch_size, test_size=test_size, public_size=public_size, hidden=hidden, **common
        )

    def _splits(self) -> dict[str, Dataset]:
        return _digits_splits(self.test_size, self.public_size, self.split_seed)

    def build_model(self) -> nn.Module:
        return DigitsCNN(self.channels1, self.channels2, self.hidden)
