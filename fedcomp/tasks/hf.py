"""Image classification on any Hugging Face dataset, loaded through Flower Datasets.

``python -m fedcomp.run task=hf task.dataset=ylecun/mnist`` loads the dataset with
``flwr_datasets.FederatedDataset(dataset=..., partitioners={train_split: ...})`` (which
calls ``datasets.load_dataset``): from the Hub when online, from the local Hugging Face
cache when it was downloaded before (set ``HF_HUB_OFFLINE=1`` to skip network retries).

``task.dataset`` may also be a local path, loaded through the same ``FederatedDataset``
path with no network:

- a ``DatasetDict.save_to_disk`` / ``Dataset.save_to_disk`` directory (has
  ``dataset_dict.json`` or ``state.json``): its Arrow files are read with the packaged
  ``arrow`` builder (``load_dataset("arrow", data_files={split: [...]})``);
- a directory of data files ``load_dataset`` understands (parquet, csv, json, image
  folders, ...).

An unknown name with no network raises ``ValueError`` naming ``task.dataset``.

Splits (all disjoint): Flower Datasets shuffles every split with ``split_seed``; the
first ``public_size`` train examples are the ``public`` split (central pretraining), the
rest the client pool (optionally capped by ``max_train_examples``); the test split is
``test_split`` (capped by ``max_test_examples``), or when the dataset has none, the
``test_size`` train examples after the public ones. Images are converted once per process
(cached) to ``image`` (C·H·W uint8, resized to ``image_size`` when set) and ``label``
(int64; ``ClassLabel``s keep their ids, other labels are numbered in sorted order).

Model: a CNN adapting to the image shape and number of classes (``conv1, conv2, fc1,
fc2``; adaptive average pooling to 4×4 makes any image size work). Pixels are scaled to
[-1, 1] before the model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, List, Value
from torch import nn

from fedcomp.tasks.classification import ImageClassificationTask


class ImageCNN(nn.Module):
    """conv(C→c1, 3×3, pad 1) → ReLU → maxpool 2 → conv(c1→c2, 3×3, pad 1) → ReLU
    → adaptive avg-pool 4×4 → fc1(16·c2 → hidden) → ReLU → fc2(hidden → num_classes)."""

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        num_classes: int,
        channels1: int = 16,
        channels2: int = 32,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.shape = (in_channels, height, width)
        self.conv1 = nn.Conv2d(in_channels, channels1, 3, padding=1)
        self.conv2 = nn.Conv2d(channels1, channels2, 3, padding=1)
        self.fc1 = nn.Linear(channels2 * 16, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, *self.shape)
        x = F.relu(self.conv1(x))
        if min(x.shape[-2:]) >= 2:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 4)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _load_kwargs(dataset: str) -> tuple[str, dict[str, Any]]:
    """The ``load_dataset`` path and kwargs for a Hub id or a local path."""
    path = Path(dataset).expanduser()
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        files = {s: sorted(str(f) for f in (path / s).glob("*.arrow")) for s in splits}
        return "arrow", {"data_files": {s: f for s, f in files.items() if f}}
    if path.is_dir() and (path / "state.json").is_file():
        return "arrow", {"data_files": {"train": sorted(str(f) for f in path.glob("*.arrow"))}}
    return (str(path) if path.exists() else dataset), {}


def _to_array(img: Any, mode: str | None, size: int | None) -> np.ndarray:
    """One image (PIL or array-like) -> HWC uint8 array."""
    if hasattr(img, "convert"):  # PIL image
        if mode is not None and img.mode != mode:
            img = img.convert(mode)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size))
        arr = np.asarray(img)
    else:
        arr = np.asarray(img)
        if size is not None and arr.shape[:2] != (size, size):
            raise ValueError("task.image_size resizing needs PIL images (Image feature)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _convert(
    ds: Dataset, image_key: str, label_key: str, label_ids: dict[Any, int] | None,
    mode: str | None, size: int | None, shape: tuple[int, int, int] | None,
) -> tuple[Dataset, tuple[int, int, int]]:
    images, labels = [], []
    for batch in ds.iter(batch_size=1024):
        for img, lab in zip(batch[image_key], batch[label_key]):
            arr = _to_array(img, mode, size)
            if shape is None:
                shape = (arr.shape[2], arr.shape[0], arr.shape[1])
            if (arr.shape[2], arr.shape[0], arr.shape[1]) != shape:
                raise ValueError(
                    f"task.dataset images have different shapes ({shape} and "
                    f"{(arr.shape[2], arr.shape[0], arr.shape[1])}); set task.image_size"
                )
            images.append(arr.transpose(2, 0, 1).reshape(-1))
            labels.append(label_ids[lab] if label_ids is not None else int(lab))
    c, h, w = shape if shape is not None else (1, 1, 1)
    features = Features({"image": List(Value("uint8"), length=c * h * w), "label": Value("int64")})
    data = {
        "image": np.stack(images) if images else np.zeros((0, c * h * w), np.uint8),
        "label": np.asarray(labels, dtype=np.int64),
    }
    return Dataset.from_dict(data, features=features), (c, h, w)


@functools.lru_cache(maxsize=4)
def _hf_splits(
    dataset: str, subset: str | None, train_split: str, test_split: str | None,
    image_key: str | None, label_key: str, image_size: int | None, public_size: int,
    test_size: int, max_train_examples: int | None, max_test_examples: int | None,
    split_seed: int, cache_dir: str | None,
) -> dict[str, Any]:
    """Load through FederatedDataset, split, convert (cached per process)."""
    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import IidPartitioner

    path, kwargs = _load_kwargs(dataset)
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    fds = FederatedDataset(
        dataset=path, subset=subset, partitioners={train_split: IidPartitioner(1)},
        shuffle=True, seed=split_seed, **kwargs,
    )
    try:
        train = fds.load_split(train_split)
    except ValueError as exc:
        if "not present" in str(exc):
            raise ValueError(f"task.train_split={train_split!r}: {exc}") from exc
        raise ValueError(f"task.dataset={dataset!r} could not be loaded: {exc}") from exc
    except Exception as exc:  # DatasetNotFoundError, ConnectionError, FileNotFoundError...
        raise ValueError(
            f"task.dataset={dataset!r} could not be loaded ({type(exc).__name__}: {exc}). "
            "It is not a local dataset directory and the Hugging Face Hub could not provide "
            "it: check the name, download it once while online (it is then cached), or pass "
            "a local save_to_disk directory."
        ) from exc

    columns = train.column_names
    if label_key not in columns:
        raise ValueError(f"task.label_key={label_key!r} is not a column of {dataset!r}: {columns}")
    if image_key is None:
        from datasets import Image

        candidates = [c for c, f in train.features.items() if isinstance(f, Image)]
        candidates += [c for c in ("image", "img", "pixel_values") if c in columns]
        if not candidates:
            raise ValueError(f"set task.image_key: no image column found in {dataset!r}: {columns}")
        image_key = candidates[0]
    elif image_key not in columns:
        raise ValueError(f"task.image_key={image_key!r} is not a column of {dataset!r}: {columns}")

    label_feature = train.features[label_key]
    if isinstance(label_feature, ClassLabel):
        label_ids, num_classes = None, label_feature.num_classes
    else:
        values = sorted(set(train[label_key]))
        if all(isinstance(v, (int, np.integer)) and v >= 0 for v in values):
            label_ids, num_classes = None, int(max(values)) + 1
        else:
            label_ids = {v: i for i, v in enumerate(values)}
            num_classes = len(values)

    if test_split is not None:
        try:
            test = fds.load_split(test_split)
        except ValueError as exc:
            raise ValueError(f"task.test_split={test_split!r}: {exc}") from exc
        rest_start = public_size
    else:
        test = train.select(range(public_size, min(len(train), public_size + test_size)))
        rest_start = public_size + test_size
    if rest_start >= len(train):
        raise ValueError(
            f"task.public_size={public_size} (and task.test_size when there is no test split) "
            f"leave no client examples out of {len(train)}"
        )
    public = train.select(range(0, public_size))
    pool = train.select(range(rest_start, len(train)))
    if max_train_examples is not None:
        pool = pool.select(range(min(len(pool), max_train_examples)))
    if max_test_examples is not None:
        test = test.select(range(min(len(test), max_test_examples)))

    first = train[0][image_key]
    mode = None
    if hasattr(first, "mode"):
        mode = "L" if first.mode in ("L", "1", "I", "I;16", "F") else "RGB"
    out: dict[str, Any] = {"num_classes": num_classes}
    shape = None
    for name, split in (("pool", pool), ("public", public), ("test", test)):
        out[name], shape = _convert(split, image_key, label_key, label_ids, mode, image_size, shape)
    out["shape"] = shape
    return out


class HFDatasetTask(ImageClassificationTask):
    """Image classification on a Hugging Face dataset loaded via Flower Datasets.

    Parameters
    ----------
    dataset
        Hub id (``ylecun/mnist``, ``uoft-cs/cifar10``...) or a local directory.
    subset
        Dataset configuration name (``load_dataset(name=...)``).
    train_split, test_split
        Split names; ``test_split=None`` carves ``test_size`` examples from train.
    image_key, label_key
        Source columns (``image_key=None``: the first Image column / image / img).
    image_size
        Resize images to ``image_size``² (``None``: keep; all must share one size).
    max_train_examples, max_test_examples
        Caps on the examples loaded per split.
    cache_dir
        ``load_dataset`` cache directory (``None``: the Hugging Face default).
    common
        The optimizer, split and CNN settings of
        :class:`~fedcomp.tasks.classification.ImageClassificationTask`
        (``split_seed`` also seeds Flower Datasets' shuffle).
    """

    name = "hf"
    label_column = "label"

    def __init__(
        self,
        dataset: str = "ylecun/mnist",
        subset: str | None = None,
        train_split: str = "train",
        test_split: str | None = "test",
        image_key: str | None = None,
        label_key: str = "label",
        image_size: int | None = None,
        max_train_examples: int | None = None,
        max_test_examples: int | None = None,
        cache_dir: str | None = None,
        channels1: int = 16,
        channels2: int = 32,
        **common: Any,
    ) -> None:
        if not dataset:
            raise ValueError("task.dataset must name a Hugging Face dataset or a local directory")
        super().__init__(channels1=channels1, channels2=channels2, **common)
        self.dataset = str(dataset)
        self.subset = subset
        self.train_split = train_split
        self.test_split = test_split
        self.image_key = image_key
        self.label_key = label_key
        self.image_size = None if image_size is None else int(image_size)
        self.max_train_examples = max_train_examples
        self.max_test_examples = max_test_examples
        self.cache_dir = cache_dir

    def _splits(self) -> dict[str, Any]:
        return _hf_splits(
            self.dataset, self.subset, self.train_split, self.test_split, self.image_key,
            self.label_key, self.image_size, self.public_size, self.test_size,
            self.max_train_examples, self.max_test_examples, self.split_seed, self.cache_dir,
        )

    @property
    def num_classes(self) -> int:
        return int(self._splits()["num_classes"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the converted images."""
        return tuple(self._splits()["shape"])  # type: ignore[return-value]

    def build_model(self) -> nn.Module:
        c, h, w = self.image_shape
        return ImageCNN(c, h, w, self.num_classes, self.channels1, self.channels2, self.hidden)

    def _xy(self, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        if len(data) == 0:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        cols = data.with_format("numpy", columns=["image", "label"])[:]
        x = torch.from_numpy(np.asarray(cols["image"], dtype=np.float32)) / 127.5 - 1.0
        y = torch.from_numpy(np.asarray(cols["label"], dtype=np.int64))
        return x, y

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "dataset": self.dataset, "subset": self.subset,
        }
