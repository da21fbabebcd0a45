"""Which node serves which partition, and a seeded sample of partitions each round.

Flower's own FedAvg samples random node ids (drawn with ``os.urandom``), so seeding
does not make it reproducible; fedcomp maps node ids to partition ids once, with one
``query`` message per node, and samples partition ids with a seeded generator.
"""

from __future__ import annotations

import json
import time

import numpy as np
from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid

from fedcomp.core.formula import cohort_size
from fedcomp.core.seeds import derive_seed
from fedcomp.flower.protocol import PARTITION_STATS


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """Node ids once ``count`` nodes are connected; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {len(node_ids)} of federation.num_clients={count} nodes connected "
                f"within engine.connect_timeout={timeout:g} s"
            )
        time.sleep(0.1)
    return node_ids


class Partitions:
    """The node ↔ partition map of a run, each partition's statistics, seeded sampling.

    Parameters
    ----------
    num_clients
        ``federation.num_clients``: partitions ``0 .. num_clients - 1``.
    seed
        The run's seed.
    """

    def __init__(self, num_clients: int, seed: int) -> None:
        self.num_clients = num_clients
        self.seed = seed
        self.node_to_partition: dict[int, int] = {}
        self.stats: list[dict] = []

    def discover(self, grid: Grid, timeout: float) -> None:
        """Ask every node which partition it serves (one ``query`` message each)."""
        node_ids = wait_for_nodes(grid, self.num_clients, timeout)
        queries = [Message(RecordDict(), node_id, MessageType.QUERY, group_id="0") for node_id in node_ids]
        stats = []
        for reply in grid.send_and_receive(queries):
            if reply.has_error():
                raise RuntimeError(
                    f"node {reply.metadata.src_node_id} failed the partition query: {reply.error.reason}"
                )
            info = json.loads(str(reply.content.config_records[PARTITION_STATS]["stats"]))
            self.node_to_partition[reply.metadata.src_node_id] = int(info["partition_id"])
            stats.append(info)
        self.stats = sorted(stats, key=lambda s: s["partition_id"])
        found = sorted(self.node_to_partition.values())
        if found != list(range(self.num_clients)):
            raise RuntimeError(f"expected partitions 0..{self.num_clients - 1} from the nodes, got {found}")

    def size(self, partition: int) -> int | None:
        """Examples in ``partition`` as its node reported them (``None`` if unknown)."""
        for info in self.stats:
            if info["partition_id"] == partition and "num_examples" in info:
                return int(info["num_examples"])
        return None

    def sample(self, server_round: int, phase: str, fraction: float, minimum: int) -> list[tuple[int, int]]:
        """``(node_id, partition)`` of a seeded sample (Flower's integer cohort)."""
        size = cohort_size(self.num_clients, fraction, minimum)
        if size == 0:
            return []
        purpose = 0 if phase == MessageType.TRAIN else 1
        rng = np.random.default_rng(derive_seed(self.seed, server_round, purpose, 3))
        chosen = sorted(int(p) for p in rng.choice(self.num_clients, size=size, replace=False))
        by_partition = {p: n for n, p in self.node_to_partition.items()}
        return [(by_partition[p], p) for p in chosen]

    def of(self, node_id: int) -> int:
        """The partition a node serves (-1 if unknown)."""
        return self.node_to_partition.get(node_id, -1)
