"""fedcomp's ClientApp: receive the model, train, encode the update, reply.

``app`` (module level) is what ``flwr run`` loads; it reads the fedcomp config from the
run config key ``fedcomp-config`` (a JSON string). The simulation engine builds the
same app with the config bound directly (:func:`build_client_app`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcomp.compressors.base import Tensors
from fedcomp.compressors.channel import add, decode_checked, subtract
from fedcomp.compressors.identity import Identity
from fedcomp.compressors.memory import ErrorFeedback
from fedcomp.core.seeds import derive_seed
from fedcomp.flower import protocol
from fedcomp.flower.mods import ledger_mod
from fedcomp.flower.setup import Setup, config_from_context, get_setup, model_state

HELD_KEY = "fedcomp.held"
RESIDUAL_KEY = "fedcomp.residual"

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised by a client told to crash through the ``faults`` config (robustness tests)."""


def partition_id(context: Context) -> int:
    """The partition this node serves (``--node-config partition-id=N``)."""
    if "partition-id" not in context.node_config:
        raise KeyError("node config has no 'partition-id' (start the SuperNode with it)")
    return int(context.node_config["partition-id"])


def _fault(setup: Setup, kind: str, pid: int, server_round: int) -> bool:
    faults = setup.cfg.get("faults") or {}
    rounds = faults.get("rounds") or []
    return pid in (faults.get(kind) or []) and (not rounds or server_round in rounds)


def _state_arrays(context: Context, key: str) -> Tensors | None:
    record = context.state.array_records.get(key)
    return protocol.from_array_record(record) if record is not None else None


def receive_model(setup: Setup, msg: Message, context: Context) -> Tensors:
    """The full model this client holds after decoding a model-carrying message."""
    encoded = protocol.unpack(msg.content)
    names = setup.sent_names
    if not setup.channel.downlink:
        weights = decode_checked(Identity(), encoded, setup.initial_state, names)
        return {**setup.initial_state, **weights}
    held = _state_arrays(context, HELD_KEY) or dict(setup.initial_state)
    delta = decode_checked(setup.channel.compressor, encoded, setup.initial_state, names)
    model = add(held, delta)
    context.state[HELD_KEY] = protocol.to_array_record(model)
    return model


def encode_update(
    setup: Setup, update: Tensors, context: Context, server_round: int, pid: int
) -> RecordDict:
    """Encode an update (with error feedback when configured) into reply protocol."""
    channel = setup.channel
    rng = np.random.default_rng(derive_seed(setup.seed, server_round, pid, 2))
    if channel.error_feedback:
        residual = _state_arrays(context, RESIDUAL_KEY)
        encoded, residual = ErrorFeedback().step(channel.compressor, update, residual, rng)
        context.state[RESIDUAL_KEY] = protocol.to_array_record(residual)
    else:
        encoded = channel.compressor.encode(update, rng)
    if _fault(setup, "corrupt", pid, server_round):
        name = next(iter(encoded.arrays))
        encoded.arrays[name] = encoded.arrays[name].reshape(-1)[:-1].copy()
    return protocol.pack(encoded, setup.dense_bytes)


def client_train(setup: Setup, msg: Message, context: Context) -> Message:
    """Decode the global model, train locally, reply with the encoded update."""
    torch.set_num_threads(1)
    pid = partition_id(context)
    server_round = int(msg.content[protocol.CONFIG]["server-round"])
    if _fault(setup, "crash", pid, server_round):
        raise InjectedFault(f"client {pid} crashed in round {server_round} (faults.crash)")
    received = receive_model(setup, msg, context)
    client_cfg = setup.cfg["client"]
    metrics: dict[str, float] = {"num_examples": 0.0}
    if client_cfg.get("train", True):
        from fedcomp.tasks.partitions import load_partitions

        data = load_partitions(setup.task, setup.cfg["partition"], _num_clients(setup), setup.seed)[pid]
        model = setup.model_with(received)
        torch.manual_seed(derive_seed(setup.seed, server_round, pid, 1))
        metrics = setup.task.train(
            model,
            data,
            epochs=int(client_cfg["local_epochs"]),
            steps=client_cfg.get("local_steps"),
            seed=derive_seed(setup.seed, server_round, pid, 1),
        )
        trained = model_state(model)
    else:
        trained = received
    names = list(setup.initial_state)  # the transform drops frozen tensors itself (Freeze stage)
    if client_cfg.get("update", "delta") == "weights":
        update = {n: trained[n] for n in names}
    else:
        update = subtract(trained, received, names)
    content = encode_update(setup, update, context, server_round, pid)
    content[protocol.METRICS] = MetricRecord({k: float(v) for k, v in metrics.items()})
    return Message(content, reply_to=msg)


def client_evaluate(setup: Setup, msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this client's partition."""
    from fedcomp.tasks.partitions import load_partitions

    torch.set_num_threads(1)
    pid = partition_id(context)
    received = receive_model(setup, msg, context)
    data = load_partitions(setup.task, setup.cfg["partition"], _num_clients(setup), setup.seed)[pid]
    metrics = setup.task.evaluate(setup.model_with(received), data)
    metrics["num_examples"] = float(len(data))
    return Message(
        RecordDict({protocol.METRICS: MetricRecord({k: float(v) for k, v in metrics.items()})}),
        reply_to=msg,
    )


def client_query(setup: Setup, msg: Message, context: Context) -> Message:
    """Tell the server which partition this node serves, its size and label histogram."""
    from fedcomp.tasks.partitions import load_partitions, partition_stats

    pid = partition_id(context)
    partitions = load_partitions(setup.task, setup.cfg["partition"], _num_clients(setup), setup.seed)
    stats = partition_stats([partitions[pid]], setup.task.label_column)[0]
    stats["partition_id"] = pid
    return Message(
        RecordDict({protocol.PARTITION_STATS: ConfigRecord({"stats": json.dumps(stats, default=str)})}),
        reply_to=msg,
    )


def _num_clients(setup: Setup) -> int:
    return int(setup.cfg["federation"]["num_clients"])


def build_client_app(cfg: dict[str, Any] | None = None) -> ClientApp:
    """The ClientApp; ``cfg`` binds the config (simulation), else it comes from run config."""
    app = ClientApp(mods=[ledger_mod])

    def setup_of(context: Context) -> Setup:
        return get_setup(cfg if cfg is not None else config_from_context(context))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return client_train(setup_of(context), msg, context)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return client_evaluate(setup_of(context), msg, context)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return client_query(setup_of(context), msg, context)

    return app


app = build_client_app()
