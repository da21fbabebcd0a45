"""HFDatasetTask: a Hugging Face dataset loaded through Flower Datasets' FederatedDataset,
offline: the test saves a tiny DatasetDict to disk and loads it by path."""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

from fedcomp.tasks.hf import HFDatasetTask


def _images(n, rng, size=(10, 12), mode="L"):
    from PIL import Image as PILImage

    shape = size if mode == "L" else (*size, 3)
    return [PILImage.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode) for _ in range(n)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict (train 80 / test 20, 3 classes, 10x12 grey images) saved with save_to_disk."""
    root = tmp_path_factory.mktemp("hfds")
    rng = np.random.default_rng(0)
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    dd = DatasetDict(
        train=Dataset.from_dict({"image": _images(80, rng), "label": rng.integers(0, 3, 80).tolist()}, features=features),
        test=Dataset.from_dict({"image": _images(20, rng), "label": rng.integers(0, 3, 20).tolist()}, features=features),
    )
    dd.save_to_disk(str(root / "tiny"))
    return root


def make_task(saved, **kw):
    kw.setdefault("public_size", 10)
    return HFDatasetTask(dataset=str(saved / "tiny"), cache_dir=str(saved / "cache"), **kw)


def test_loads_saved_dataset_through_federated_dataset(saved, monkeypatch):
    import flwr_datasets

    calls = []
    real = flwr_datasets.FederatedDataset

    class Spy(real):
        def __init__(self, **kw):
            calls.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(flwr_datasets, "FederatedDataset", Spy)
    task = make_task(saved, split_seed=11)
    pool, public, test = task.client_dataset(), task.public_dataset(), task.test_dataset()
    assert calls and calls[0]["dataset"] == "arrow"  # save_to_disk files via the arrow builder
    assert (len(pool), len(public), len(test)) == (70, 10, 20)
    assert task.image_shape == (1, 10, 12) and task.num_classes == 3
    assert pool.column_names == ["image", "label"]
    assert set(pool["label"]) <= {0, 1, 2}


def test_model_and_training(saved):
    task = make_task(saved)
    torch.manual_seed(0)
    model = task.build_model()
    assert [n for n, _ in model.named_parameters()] == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert model.fc2.out_features == 3
    m1 = task.train(model, task.client_dataset(), epochs=1, steps=None, seed=0)
    assert m1["num_examples"] == 70 and np.isfinite(m1["train_loss"])
    ev = task.evaluate(model, task.test_dataset())
    assert set(ev) >= {"loss", "accuracy"} and 0 <= ev["accuracy"] <= 1


def test_no_test_split_and_resize(saved):
    task = make_task(saved, test_split=None, test_size=15, image_size=8)
    assert (len(task.client_dataset()), len(task.public_dataset()), len(task.test_dataset())) == (55, 10, 15)
    assert task.image_shape == (1, 8, 8)
    model = task.build_model()
    assert model(torch.zeros(2, 64)).shape == (2, 3)


def test_rgb_parquet_directory(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 40), ("test", 10)):
        ds = Dataset.from_dict({"img": _images(n, rng, (6, 6), "RGB"), "label": rng.integers(0, 2, n).tolist()},
                               features=Features({"img": Image(), "label": ClassLabel(num_classes=2)}))
        (tmp_path / "pq").mkdir(exist_ok=True)
        ds.to_parquet(str(tmp_path / "pq" / f"{split}.parquet"))
    task = HFDatasetTask(dataset=str(tmp_path / "pq"), public_size=5, cache_dir=str(tmp_path / "cache"))
    assert task.image_shape == (3, 6, 6) and len(task.client_dataset()) == 35
    assert task.build_model()(torch.zeros(1, 108)).shape == (1, 2)


def test_unknown_dataset_offline_names_task_dataset(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    task = HFDatasetTask(dataset="no-such-user/no-such-dataset-fedcomp", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"task\.dataset='no-such-user/no-such-dataset-fedcomp'"):
        task.client_dataset()


def test_bad_split_and_column(saved):
    with pytest.raises(ValueError, match=r"task\.test_split"):
        make_task(saved, test_split="validation").client_dataset()
    with pytest.raises(ValueError, match=r"task\.label_key"):
        make_task(saved, label_key="target").client_dataset()
