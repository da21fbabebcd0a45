"""fedcomp.tasks.partitions: Flower Datasets partitioners, validation, stats."""

import numpy as np
import pytest
from datasets import Dataset
from omegaconf import OmegaConf

from fedcomp.config import CONF_DIR
from fedcomp.tasks import partitions as fdata
from fedcomp.tasks.partitions import build_partitioner, load_partitions, partition_stats

CONF = CONF_DIR / "partition"


def partition_cfg(name: str, **overrides):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    cfg.update(overrides)
    return cfg


class ToyTask:
    """A pool with a unique ``idx`` per example, 10 labels, 1,000 examples."""

    name = "toy"
    label_column = "label"

    def __init__(self, n: int = 1000, classes: int = 10):
        self.n, self.classes = n, classes

    def client_dataset(self):
        rng = np.random.default_rng(0)
        return Dataset.from_dict({"idx": np.arange(self.n), "label": rng.integers(0, self.classes, self.n)})


@pytest.mark.parametrize("name", ["dirichlet", "iid", "pathological"])
def test_partitions_disjoint_and_cover_pool(name):
    parts = load_partitions(ToyTask(), partition_cfg(name), 10, seed=0)
    assert len(parts) == 10 and all(len(p) > 0 for p in parts)
    ids = np.concatenate([np.asarray(p["idx"]) for p in parts])
    assert len(ids) == len(set(ids.tolist())) == 1000  # disjoint and complete
    if name == "pathological":
        assert all(len(set(p["label"])) <= 2 for p in parts)


@pytest.mark.parametrize("name", ["dirichlet", "iid", "pathological"])
def test_same_seed_same_partitions_different_seed_different(name):
    def ids(seed):
        fdata._CACHE.clear()  # recompute, not just hit the per-process cache
        return [np.asarray(p["idx"]).tolist() for p in load_partitions(ToyTask(), partition_cfg(name), 5, seed)]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)


def test_cached_per_process():
    a = load_partitions(ToyTask(), partition_cfg("dirichlet"), 4, seed=3)
    b = load_partitions(ToyTask(), OmegaConf.create(partition_cfg("dirichlet")), 4, seed=3)
    assert all(x is y for x, y in zip(a, b))


def test_digits_dirichlet_default_config_works():
    from fedcomp.tasks.digits import DigitsTask

    task = DigitsTask()
    parts = load_partitions(task, partition_cfg("dirichlet"), 10, seed=0)
    assert sum(len(p) for p in parts) == len(task.client_dataset())
    assert min(len(p) for p in parts) >= 10
    stats = partition_stats(parts, "label")
    assert [s["partition_id"] for s in stats] == list(range(10))
    assert all(sum(s["label_counts"].values()) == s["num_examples"] for s in stats)
    total = {}
    for s in stats:
        for k, v in s["label_counts"].items():
            total[k] = total.get(k, 0) + v
    assert total == dict(zip(*np.unique(task.client_dataset()["label"], return_counts=True)))


@pytest.mark.parametrize("alpha", [0, -1.0, 0.0])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match=r"partition\.alpha"):
        load_partitions(ToyTask(), partition_cfg("dirichlet", alpha=alpha), 5, seed=0)


@pytest.mark.parametrize("num_clients", [0, -3])
def test_num_clients_at_least_one(num_clients):
    with pytest.raises(ValueError, match=r"federation\.num_clients"):
        load_partitions(ToyTask(), partition_cfg("iid"), num_clients, seed=0)


def test_too_many_clients_iid_says_what_data_supports():
    with pytest.raises(ValueError, match=r"federation\.num_clients=2000.*at most 1000"):
        load_partitions(ToyTask(), partition_cfg("iid"), 2000, seed=0)


def test_too_many_clients_dirichlet_says_what_data_supports():
    with pytest.raises(ValueError, match=r"federation\.num_clients=60.*at most \d+ clients") as err:
        load_partitions(ToyTask(n=300), partition_cfg("dirichlet"), 60, seed=0)
    supported = int(str(err.value).split("at most ")[1].split()[0])
    assert 1 <= supported < 60
    parts = load_partitions(ToyTask(n=300), partition_cfg("dirichlet"), supported, seed=0)
    assert all(len(p) >= 10 for p in parts)


def test_unknown_partitioner_lists_allowed():
    with pytest.raises(ValueError, match="dirichlet.*iid.*pathological"):
        build_partitioner({"_target_": "flwr_datasets.partitioner.SquarePartitioner"}, 4, "label", 0)
    with pytest.raises(ValueError, match="allowed"):
        build_partitioner({"_target_": "my.module.Magic"}, 4, "label", 0)


def test_short_target_and_unknown_keys():
    p = build_partitioner({"_target_": "iid"}, 3, "label", 0)
    assert type(p).__name__ == "IidPartitioner"
    with pytest.raises(ValueError, match="alpah"):
        build_partitioner(partition_cfg("dirichlet", alpah=1.0), 3, "label", 0)


def test_label_partitioner_needs_label_column():
    with pytest.raises(ValueError, match="partition=iid"):
        build_partitioner(partition_cfg("dirichlet"), 3, None, 0)
    assert build_partitioner(partition_cfg("iid"), 3, None, 0) is not None


def test_partition_stats_without_labels():
    parts = load_partitions(ToyTask(), partition_cfg("iid"), 4, seed=0)
    stats = partition_stats(parts, None)
    assert [s["num_examples"] for s in stats] == [250] * 4
    assert all(s["label_counts"] == {} for s in stats)
