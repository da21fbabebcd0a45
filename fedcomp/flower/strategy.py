"""The server side: FedAvg on compressed updates that records every message in the ledger.

:class:`TrackingFedAvg` is a Flower ``Strategy``; Flower's own ``Strategy.start``
drives the rounds. It differs from ``flwr.serverapp.strategy.FedAvg`` where fedcomp
needs it to:

- sampling is over partition ids with a seeded generator (:mod:`fedcomp.flower.sampling`);
- the model goes down as :mod:`fedcomp.flower.downlink` builds it (plain or compressed);
- clients send compressed updates, which are decoded, checked and combined: by the
  compressor's own ``aggregate`` when it has one, else the example-weighted mean; the
  server optimizer (``server``) applies the result to the global model;
- every model-carrying message is measured (server rows) and the client's own rows,
  carried back in the reply, are stored beside them;
- a client that raises, a payload that does not decode, or a ``num_examples`` claim
  that cannot be true is recorded ``failed`` (its bytes still count) and the round goes
  on without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.app.message_type import MessageType
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.channel import decode_checked, subtract
from fedcomp.core.errors import one_line
from fedcomp.core.ledger import LedgerRow
from fedcomp.flower import protocol
from fedcomp.flower.aggregate import BadExamples, check_examples, normalized, weighted_mean, weighted_metrics
from fedcomp.flower.downlink import Downlink
from fedcomp.flower.measure import floor_bytes, ledger_row
from fedcomp.flower.sampling import Partitions
from fedcomp.flower.setup import Setup
from fedcomp.optimizers.base import ServerOptimizer

log = logging.getLogger(__name__)
#: Reply fields that are not metrics.
SYNC_FIELDS = ("v", "h")


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
    """FedAvg over compressed updates with a byte ledger, reproducible sampling and failures.

    Parameters
    ----------
    setup
        Task, channel and round-0 model built from the run config.
    run_id
        Identifier written in every ledger row.
    optimizer
        The server optimizer (``server``): ``step(global_state, update)`` returns the
        new global state.
    """

    def __init__(self, setup: Setup, run_id: str, optimizer: ServerOptimizer) -> None:
        self.setup = setup
        self.run_id = run_id
        self.optimizer = optimizer
        fed = setup.cfg["federation"]
        self.fraction_fit = float(fed["fraction_fit"])
        self.fraction_evaluate = float(fed["fraction_evaluate"])
        self.min_fit_clients = int(fed.get("min_fit_clients", 1))
        self.global_state: Tensors = dict(setup.initial_state)
        self.generation = 0  # how many times the global model changed
        self.partitions = Partitions(int(fed["num_clients"]), setup.seed)
        self.downlink = Downlink(setup)
        self.aggregation_state: Tensors = {}
        self.rows: list[LedgerRow] = []
        self.client_rows: list[dict] = []
        self.failures: list[Failure] = []
        self.floor: dict[str, int] = {}
        self.log = RoundLog()
        self._pending: dict[tuple[int, str, int], LedgerRow] = {}
        self.connect_timeout = float(setup.cfg["engine"].get("connect_timeout", 300))

    @property
    def partition_stats(self) -> list[dict]:
        return self.partitions.stats

    # ------------------------------------------------------------------ sending
    def _configure(self, server_round: int, phase: str, grid: Grid, fraction: float) -> list[Message]:
        if not self.partitions.node_to_partition:
            self.partitions.discover(grid, self.connect_timeout)
        minimum = self.min_fit_clients if phase == MessageType.TRAIN else 1  # as the formula
        self.downlink.start(self.global_state, self.generation, server_round)
        messages = []
        for node_id, partition in self.partitions.sample(server_round, phase, fraction, minimum):
            content, kind = self.downlink.content(partition)
            message = Message(content, node_id, phase, group_id=str(server_round))
            row = ledger_row(
                message, self.setup.dense_bytes, run_id=self.run_id, round=server_round, phase=phase,
                partition_id=partition, node_id=node_id, direction="down", recorded_by="server", kind=kind,
            )
            self.rows.append(row)
            self._pending[(server_round, phase, node_id)] = row
            messages.append(message)
            if "down" not in self.floor:
                self.floor["down"] = floor_bytes(message, self.setup.layout, {})
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
    def _fail(self, row: LedgerRow, server_round: int, phase: str, reason: str) -> None:
        reason = one_line(reason)
        row.status, row.error = "failed", reason
        self.failures.append(Failure(server_round, phase, row.partition_id, row.node_id, reason))
        log.warning("round %d: client %d failed: %s", server_round, row.partition_id, reason)

    def _receive(self, server_round: int, phase: str, replies: Iterable[Message]) -> list[tuple[Message, LedgerRow, dict]]:
        """Record every reply; return the ones that arrived without error, with their fields.

        Replies are taken in partition order (they arrive in any order; a fixed order keeps
        float sums reproducible). ``held`` models the SuperLink's object store for
        ``link_bytes``: the objects of this round's earlier replies.
        """
        received, held = [], set()
        for reply in sorted(replies, key=lambda r: self.partitions.of(r.metadata.src_node_id)):
            node_id = reply.metadata.src_node_id
            partition = self.partitions.of(node_id)
            down = self._pending.pop((server_round, phase, node_id), None)
            if reply.has_error():
                reason = reply.error.reason
                self.downlink.lost(partition, reason)
                if down is not None:
                    self._fail(down, server_round, phase, reason)
                continue
            if protocol.LEDGER in reply.content.config_records:
                rows = json.loads(str(reply.content.config_records[protocol.LEDGER]["rows"]))
                for row in rows:
                    row["run_id"] = self.run_id
                self.client_rows.extend(rows)
            dense = self.setup.dense_bytes if protocol.carries_payload(reply.content) else 0
            up = ledger_row(
                reply, dense, held, run_id=self.run_id, round=server_round, phase=phase, partition_id=partition,
                node_id=node_id, direction="up", recorded_by="server", kind="update" if dense else "metrics",
            )
            self.rows.append(up)
            if dense and "up" not in self.floor:
                self.floor["up"] = floor_bytes(reply, self.setup.layout, {"n": 0})
            record = reply.content.config_records.get(protocol.PAYLOAD)
            fields = {k: v for k, v in record.items() if k not in ("p", "meta")} if record is not None else {}
            mismatch = self.downlink.report(partition, fields)
            if mismatch is not None:
                self._fail(up, server_round, phase, mismatch)
                continue
            received.append((reply, up, fields))
        for (rnd, ph, node_id), down in list(self._pending.items()):
            if rnd == server_round and ph == phase:  # sent, never answered
                self._fail(down, rnd, ph, "no reply before the timeout")
                del self._pending[(rnd, ph, node_id)]
        return received

    def _examples(self, row: LedgerRow, fields: dict) -> int:
        return check_examples(fields.get("n"), self.partitions.size(row.partition_id))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        names, reference = self.setup.sent_names, self.setup.initial_state
        compressor = self.setup.channel.compressor
        weights_mode = self.setup.cfg["client"].get("update", "delta") == "weights"
        payloads, decoded, weights, metrics = [], [], [], []
        for reply, up, fields in self._receive(server_round, MessageType.TRAIN, replies):
            try:
                examples = self._examples(up, fields)
                encoded = protocol.from_content(reply.content, self.setup.layout, self.setup.spec)[0]
                if len(encoded) != 1:
                    raise DecodeError(f"expected one payload, got {len(encoded)}")
                update = decode_checked(compressor, encoded[0], reference, names)
            except (DecodeError, BadExamples) as err:
                what = "payload does not decode" if isinstance(err, DecodeError) else "bad reply"
                self._fail(up, server_round, "train", f"{what}: {err}")
                continue
            payloads.append(encoded[0])
            decoded.append(subtract(update, self.global_state, names) if weights_mode else update)
            weights.append(float(examples))
            metrics.append((float(examples), {k: float(v) for k, v in fields.items() if k not in (*SYNC_FIELDS, "n")}))
        if decoded:
            combined = compressor.aggregate(payloads, normalized(weights), reference, self.aggregation_state)
            if combined is None:
                mean = weighted_mean(list(zip(weights, decoded)), names)
            else:
                mean, self.aggregation_state = combined
            self.global_state = self.optimizer.step(self.global_state, mean)
            self.generation += 1
        train_metrics = weighted_metrics(metrics)
        if train_metrics:
            self.log.train_metrics[server_round] = train_metrics
        return None, MetricRecord(train_metrics) if train_metrics else None

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = []
        for _, up, fields in self._receive(server_round, MessageType.EVALUATE, replies):
            try:
                examples = self._examples(up, fields)
            except BadExamples as err:
                self._fail(up, server_round, "evaluate", f"bad reply: {err}")
                continue
            metrics.append((float(examples), {k: float(v) for k, v in fields.items() if k not in (*SYNC_FIELDS, "n")}))
        result = weighted_metrics(metrics)
        if result:
            self.log.evaluate_metrics[server_round] = result
        return MetricRecord(result) if result else None

    def summary(self) -> None:
        """Flower calls this at start; fedcomp prints its own header instead."""
