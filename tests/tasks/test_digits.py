"""DigitsTask: splits, model names, reproducible training, learning."""

import numpy as np
import pytest
import torch

from fedcomp.tasks.digits import DigitsTask

NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
         "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.fixture(scope="module")
def task():
    return DigitsTask()


def test_split_sizes_and_columns(task):
    pool, test, public = task.client_dataset(), task.test_dataset(), task.public_dataset()
    assert (len(pool), len(test), len(public)) == (1347, 300, 150)
    assert pool.column_names == ["image", "label"]
    assert len(pool[0]["image"]) == 64
    # stratified: every class present in test (30 each) and public (15 each)
    # stratified by class frequency (digits classes hold 174..183 images)
    assert all(29 <= c <= 31 for c in np.bincount(test["label"]))
    assert all(14 <= c <= 16 for c in np.bincount(public["label"]))


def test_splits_disjoint(task):
    def rows(d):
        return {np.asarray(r, dtype=np.float32).tobytes() for r in d["image"]}

    pool, test, public = rows(task.client_dataset()), rows(task.test_dataset()), rows(task.public_dataset())
    # load_digits holds a few exact duplicate images; allow those, nothing more
    assert len(pool & test) <= 2 and len(pool & public) <= 2 and len(test & public) <= 2


def test_cached(task):
    assert task.client_dataset() is DigitsTask().client_dataset()


def test_model_parameter_names(task):
    model = task.build_model()
    assert [n for n, _ in model.named_parameters()] == NAMES
    assert sum(p.numel() for p in model.parameters()) == 9802
    assert list(model.buffers()) == []
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_train_reproducible_and_learns():
    task = DigitsTask(lr=0.01)  # the default lr suits short FedAvg rounds; centrally 0.01 is steadier
    pool = task.client_dataset()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = task.build_model()
        metrics = task.train(model, pool, epochs=4, steps=None, seed=7)
        results.append((metrics, [p.detach().clone() for p in model.parameters()], model))
    (m1, p1, model), (m2, p2, _) = results
    assert m1 == m2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert m1["num_examples"] == len(pool)
    ev = task.evaluate(model, task.test_dataset())
    assert set(ev) >= {"loss", "accuracy"}
    assert ev["accuracy"] > 0.9, ev


def test_different_seed_differs(task):
    data = task.client_dataset().select(range(100))
    out = []
    for seed in (1, 2):
        torch.manual_seed(0)
        model = task.build_model()
        task.train(model, data, epochs=1, steps=None, seed=seed)
        out.append(model.fc2.weight.detach().clone())
    assert not torch.equal(out[0], out[1])


def test_steps_cap_and_frozen_params(task):
    torch.manual_seed(0)
    model = task.build_model()
    model.conv1.weight.requires_grad_(False)
    before = model.conv1.weight.detach().clone()
    metrics = task.train(model, task.client_dataset(), epochs=5, steps=3, seed=0)
    assert metrics["num_steps"] == 3
    assert torch.equal(model.conv1.weight, before)


def test_bad_settings():
    with pytest.raises(ValueError, match="task.optimizer"):
        DigitsTask(optimizer="lbfgs")
    with pytest.raises(ValueError, match="task.batch_size"):
        DigitsTask(batch_size=0)
