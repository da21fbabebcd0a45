"""The server side: a FedAvg on update payloads that records every message in the ledger.

:class:`TrackingFedAvg` is a Flower ``Strategy``; Flower's own ``Strategy.start`` drives
the rounds. It differs from ``flwr.serverapp.strategy.FedAvg`` where fedcomp needs it to:

- sampling is over *partition ids* with a seeded generator (Flower samples random node
  ids, so its sampling is not reproducible); a one-off ``query`` message maps node ids
  to partition ids and collects each client's sample count and label histogram;
- clients send encoded updates, which are decoded, checked and averaged
  (weighted by ``num_examples``) into the global model;
- every model-carrying message is measured (server rows) and the client's own rows,
  carried back in the reply, are stored beside them;
- a client that raises or a payload that does not decode is recorded with status
  ``failed`` (its bytes still count) and the round goes on without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedcomp.compressors.base import DecodeError, Encoded, Tensors
from fedcomp.compressors.channel import add, decode_checked, subtract
from fedcomp.core.formula import cohort_size
from fedcomp.core.ledger import LedgerRow
from fedcomp.core.seeds import derive_seed
from fedcomp.flower import protocol
from fedcomp.flower.measure import ledger_row
from fedcomp.flower.setup import Setup

log = logging.getLogger(__name__)


@dataclass
class Failure:
    """A client or payload that failed in one round."""

    round: int
    phase: str
    partition_id: int
    node_id: int
    reason: str


@dataclass
class RoundLog:
    """What the server saw in each round, for metrics.parquet and the console line."""

    train_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    evaluate_metrics: dict[int, dict[str, float]] = field(default_factory=dict)


class TrackingFedAvg(Strategy):
    """FedAvg over encoded updates with a byte ledger, reproducible sampling and failures.

    Parameters
    ----------
    setup
        Task, compression and round-0 model built from the run config.
    run_id
        Identifier written in every ledger row.
    """

    def __init__(self, setup: Setup, run_id: str) -> None:
        self.setup = setup
        self.run_id = run_id
        fed = setup.cfg["federation"]
        self.num_clients = int(fed["num_clients"])
        self.fraction_fit = float(fed["fraction_fit"])
        self.fraction_evaluate = float(fed["fraction_evaluate"])
        self.min_fit_clients = int(fed.get("min_fit_clients", 1))
        self.global_state: Tensors = dict(setup.initial_state)
        self.held: dict[int, Tensors] = {}  # downlink mirror: model each partition holds
        self.node_to_partition: dict[int, int] = {}
        self.partition_stats: list[dict] = []
        self.rows: list[LedgerRow] = []
        self.client_rows: list[dict] = []
        self.failures: list[Failure] = []
        self.log = RoundLog()
        self._pending: dict[tuple[int, str, int], LedgerRow] = {}
        self.connect_timeout = float(setup.cfg["engine"].get("connect_timeout", 300))

    # ------------------------------------------------------------------ sampling
    def discover(self, grid: Grid) -> None:
        """Map node ids to partition ids with one query message per node."""
        node_ids = wait_for_nodes(grid, self.num_clients, self.connect_timeout)
        queries = [
            Message(RecordDict({protocol.CONFIG: ConfigRecord({"server-round": 0})}), node_id,
                    MessageType.QUERY)
            for node_id in node_ids
        ]
        stats = []
        for reply in grid.send_and_receive(queries):
            if reply.has_error():
                raise RuntimeError(
                    f"node {reply.metadata.src_node_id} failed the partition query: "
                    f"{reply.error.reason}"
                )
            info = json.loads(str(reply.content.config_records[protocol.PARTITION_STATS]["stats"]))
            self.node_to_partition[reply.metadata.src_node_id] = int(info["partition_id"])
            stats.append(info)
        self.partition_stats = sorted(stats, key=lambda s: s["partition_id"])
        found = sorted(self.node_to_partition.values())
        if found != list(range(self.num_clients)):
            raise RuntimeError(
                f"expected partitions 0..{self.num_clients - 1} from the nodes, got {found}"
            )

    def sample(self, server_round: int, phase: str, fraction: float) -> list[int]:
        """Node ids of a seeded sample of partitions (integer cohort, as Flower's)."""
        minimum = self.min_fit_clients if phase == MessageType.TRAIN else 1  # as the formula
        size = cohort_size(self.num_clients, fraction, minimum)
        if size == 0:
            return []
        purpose = 0 if phase == MessageType.TRAIN else 1
        rng = np.random.default_rng(derive_seed(self.setup.seed, server_round, purpose, 3))
        chosen = sorted(int(p) for p in rng.choice(self.num_clients, size=size, replace=False))
        by_partition = {p: n for n, p in self.node_to_partition.items()}
        return [by_partition[p] for p in chosen]

    # ------------------------------------------------------------------ downlink
    def _downlink_content(self, server_round: int, partition: int, shared: dict) -> RecordDict:
        """Records of the model message for one client (shared when not per-client)."""
        names = self.setup.sent_names
        channel = self.setup.channel
        if not channel.downlink:
            if "content" not in shared:  # one object for all clients, as Flower would send
                encoded = Encoded({n: self.global_state[n] for n in names}, {})
                shared["content"] = protocol.pack(encoded, self.setup.dense_bytes)
            content = RecordDict(dict(shared["content"].items()))
        else:
            held = self.held.get(partition, self.setup.initial_state)
            delta = subtract(self.global_state, held, list(held))  # Freeze drops frozen ones
            rng = np.random.default_rng(derive_seed(self.setup.seed, server_round, partition, 4))
            encoded = channel.compressor.encode(delta, rng)
            decoded = decode_checked(channel.compressor, encoded, self.setup.initial_state, names)
            self.held[partition] = add(held, decoded)
            content = protocol.pack(encoded, self.setup.dense_bytes)
        content[protocol.CONFIG] = ConfigRecord({"server-round": server_round})
        return content

    def _configure(self, server_round: int, phase: str, grid: Grid, fraction: float) -> list[Message]:
        if not self.node_to_partition:
            self.discover(grid)
        shared: dict = {}
        messages = []
        for node_id in self.sample(server_round, phase, fraction):
            partition = self.node_to_partition[node_id]
            content = self._downlink_content(server_round, partition, shared)
            message = Message(content, node_id, phase)
            row = ledger_row(
                message,
                run_id=self.run_id,
                round=server_round,
                phase=phase,
                partition_id=partition,
                node_id=node_id,
                direction="down",
                recorded_by="server",
            )
            self.rows.append(row)
            self._pending[(server_round, phase, node_id)] = row
            messages.append(message)
        return messages

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._configure(server_round, MessageType.TRAIN, grid, self.fraction_fit)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.fraction_evaluate == 0:
            return []
        return self._configure(server_round, MessageType.EVALUATE, grid, self.fraction_evaluate)

    # ------------------------------------------------------------------ replies
    def _receive(self, server_round: int, phase: str, replies: Iterable[Message]) -> list[tuple[Message, LedgerRow]]:
        """Record every reply; return the ones that arrived without error."""
        received = []
        for reply in replies:
            node_id = reply.metadata.src_node_id
            partition = self.node_to_partition.get(node_id, -1)
            down = self._pending.pop((server_round, phase, node_id), None)
            if reply.has_error():
                reason = f"client raised: {reply.error.reason}"
                if down is not None:
                    down.status, down.error = "failed", reason
                self.failures.append(Failure(server_round, phase, partition, node_id, reason))
                log.warning("round %d: client %d failed: %s", server_round, partition, reason)
                continue
            if protocol.LEDGER in reply.content.config_records:
                rows = json.loads(str(reply.content.config_records[protocol.LEDGER]["rows"]))
                for row in rows:
                    row["run_id"] = self.run_id
                self.client_rows.extend(rows)
            up = ledger_row(
                reply,
                run_id=self.run_id,
                round=server_round,
                phase=phase,
                partition_id=partition,
                node_id=node_id,
                direction="up",
                recorded_by="server",
            )
            self.rows.append(up)
            received.append((reply, up))
        for (rnd, ph, node_id), down in list(self._pending.items()):
            if rnd == server_round and ph == phase:  # sent, never answered
                down.status, down.error = "failed", "no reply before the timeout"
                partition = self.node_to_partition.get(node_id, -1)
                self.failures.append(Failure(rnd, ph, partition, node_id, down.error))
                del self._pending[(rnd, ph, node_id)]
        # replies arrive in any order; a fixed order keeps float sums reproducible
        return sorted(received, key=lambda item: item[1].partition_id)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        names = self.setup.sent_names
        reference = self.setup.initial_state
        weighted: list[tuple[float, Tensors]] = []
        metrics: list[tuple[float, dict[str, float]]] = []
        weights_mode = self.setup.cfg["client"].get("update", "delta") == "weights"
        for reply, up in self._receive(server_round, MessageType.TRAIN, replies):
            try:
                encoded = protocol.unpack(reply.content)
                decoded = decode_checked(self.setup.channel.compressor, encoded, reference, names)
            except DecodeError as err:
                reason = f"payload does not decode (client {up.partition_id}, round {server_round}): {err}"
                up.status, up.error = "failed", reason
                self.failures.append(Failure(server_round, "train", up.partition_id, up.node_id, reason))
                log.warning("round %d: %s", server_round, reason)
                continue
            client_metrics = dict(reply.content[protocol.METRICS]) if protocol.METRICS in reply.content else {}
            num_examples = float(client_metrics.get("num_examples", 0.0)) or 1.0
            update = subtract(decoded, self.global_state, names) if weights_mode else decoded
            weighted.append((num_examples, update))
            metrics.append((num_examples, {k: float(v) for k, v in client_metrics.items()}))
        if weighted:
            self.global_state = add(self.global_state, weighted_mean(weighted, names))
        train_metrics = _weighted_mean(metrics)
        if train_metrics:
            self.log.train_metrics[server_round] = train_metrics
        return None, MetricRecord(train_metrics) if train_metrics else None

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = []
        for reply, _ in self._receive(server_round, MessageType.EVALUATE, replies):
            values = {k: float(v) for k, v in reply.content[protocol.METRICS].items()}
            metrics.append((values.get("num_examples", 1.0), values))
        result = _weighted_mean(metrics)
        if result:
            self.log.evaluate_metrics[server_round] = result
        return MetricRecord(result) if result else None

    def summary(self) -> None:
        """Flower calls this at start; fedcomp prints its own header instead."""


def weighted_mean(weighted: list[tuple[float, Tensors]], names: list[str]) -> Tensors:
    """Example-weighted mean of updates, accumulated in place (one buffer per tensor)."""
    total = np.float32(sum(w for w, _ in weighted))
    mean = {}
    for name in names:
        acc = np.zeros_like(weighted[0][1][name], dtype=np.float32)
        for weight, update in weighted:
            acc += np.float32(weight / total) * update[name]
        mean[name] = acc
    return mean


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


def _weighted_mean(items: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """Example-weighted mean of each metric; ``num_examples`` is summed."""
    if not items:
        return {}
    total = sum(w for w, _ in items) or 1.0
    keys = sorted({k for _, m in items for k in m})
    out = {}
    for key in keys:
        if key == "num_examples":
            out[key] = float(sum(m.get(key, 0.0) for _, m in items))
        else:
            out[key] = float(sum(w * m[key] for w, m in items if key in m) / total)
    return out
