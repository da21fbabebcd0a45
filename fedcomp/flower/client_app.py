"""fedcomp's ClientApp: receive the model, train, compress the update, reply.

``app`` (module level) is what ``flwr run`` loads; it reads the fedcomp config from the
run config (:func:`fedcomp.flower.setup.config_from_context`). The simulation engines
build the same app with the config bound directly (:func:`build_client_app`).

What a client keeps in its Flower Context state between rounds: the error-feedback
residual, its compressor's own memory, and with a compressed downlink the model it
holds and that model's broadcast version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedcomp.compressors.base import RoundInfo, Tensors
from fedcomp.compressors.channel import CatchUp, apply_catch_up, decode_checked, encode_update, subtract
from fedcomp.compressors.identity import Identity
from fedcomp.core.seeds import derive_seed
from fedcomp.flower import protocol
from fedcomp.flower.mods import make_ledger_mod
from fedcomp.flower.setup import Setup, config_from_context, get_setup, model_state
from fedcomp.tasks.partitions import load_partitions, partition_stats

HELD = "fedcomp.held"
SYNC = "fedcomp.sync"
RESIDUAL = "fedcomp.residual"
STATE = "fedcomp.state"


class InjectedFault(RuntimeError):
    """Raised by a client told to crash through the ``faults`` config (robustness tests)."""


class ClientFailed(RuntimeError):
    """What a ClientApp raises for any error: its message starts with the original's name.

    Flower's engines keep only ``str(exception)`` of what a ClientApp raised; naming the
    type there lets the server's one-line reason say ``NonFiniteUpdate: ...``.
    """


def _named(handler: Callable[[Setup, Message, Context], Message]) -> Callable[[Setup, Message, Context], Message]:
    def run(setup: Setup, msg: Message, context: Context) -> Message:
        try:
            return handler(setup, msg, context)
        except Exception as err:  # noqa: BLE001 - every failure becomes a named error reply
            raise ClientFailed(f"{type(err).__name__}: {err}") from err

    return run


def partition_id(context: Context) -> int:
    """The partition this node serves (``--node-config partition-id=N``)."""
    if "partition-id" not in context.node_config:
        raise KeyError("node config has no 'partition-id' (start the SuperNode with it)")
    return int(context.node_config["partition-id"])


def _fault(setup: Setup, kind: str, pid: int, server_round: int) -> bool:
    faults = setup.cfg.get("faults") or {}
    rounds = faults.get("rounds") or []
    return pid in (faults.get(kind) or []) and (not rounds or server_round in rounds)


def _load(context: Context, key: str) -> Tensors | None:
    record = context.state.array_records.get(key)
    return protocol.from_array_record(record) if record is not None else None


def _store(context: Context, key: str, tensors: Tensors | None) -> None:
    if tensors is not None:
        context.state[key] = protocol.to_array_record(tensors)


def _partition(setup: Setup, pid: int):
    num_clients = int(setup.cfg["federation"]["num_clients"])
    return load_partitions(setup.task, setup.cfg["partition"], num_clients, setup.seed)[pid]


def receive_model(setup: Setup, msg: Message, context: Context) -> tuple[Tensors, dict[str, int]]:
    """The full model this client holds after a model-carrying message, and what to report.

    With a compressed downlink the report is the broadcast version and checksum the
    client now holds (the server advances its record of the client only on a match).
    """
    payloads, fields = protocol.from_content(msg.content, setup.layout, setup.spec)
    names, initial = setup.sent_names, setup.initial_state
    if not setup.channel.downlink:
        if len(payloads) != 1:
            raise ValueError(f"expected one model payload, got {len(payloads)}")
        return {**initial, **decode_checked(Identity(), payloads[0], initial, names)}, {}
    dense = bool(fields.get("d", False))
    message = CatchUp(
        first_version=int(fields["v"]),
        target_version=int(fields["t"]),
        target_checksum=int(fields["h"]),
        deltas=[] if dense else payloads,
        dense=decode_checked(Identity(), payloads[0], initial, names) if dense else None,
    )
    held = _load(context, HELD) or {n: initial[n] for n in names}
    sync = context.state.config_records.get(SYNC)
    version = int(sync["v"]) if sync is not None else 0
    held, version = apply_catch_up(setup.channel.down, held, version, message, initial, names)
    _store(context, HELD, held)
    context.state[SYNC] = ConfigRecord({"v": version})
    return {**initial, **held}, {"v": version, "h": message.target_checksum}


def client_train(setup: Setup, msg: Message, context: Context) -> Message:
    """Decode the global model, train locally, reply with the compressed update."""
    torch.set_num_threads(1)
    pid = partition_id(context)
    server_round = int(msg.metadata.group_id)
    if _fault(setup, "crash", pid, server_round):
        raise InjectedFault(f"client {pid} crashed in round {server_round} (faults.crash)")
    received, report = receive_model(setup, msg, context)
    client_cfg = setup.cfg["client"]
    metrics: dict[str, float] = {"num_examples": 0.0}
    trained = received
    if client_cfg.get("train", True):
        seed = derive_seed(setup.seed, server_round, pid, 1)
        model = setup.model_with(received)
        torch.manual_seed(seed)
        metrics = setup.task.train(
            model, _partition(setup, pid), epochs=int(client_cfg["local_epochs"]),
            steps=client_cfg.get("local_steps"), seed=seed,
        )
        trained = model_state(model)
    names = list(setup.initial_state)  # a Freeze stage drops the frozen tensors itself
    if client_cfg.get("update", "delta") == "weights":
        update = {n: trained[n] for n in names}
    else:
        update = subtract(trained, received, names)
    if _fault(setup, "nan", pid, server_round):
        first = next(iter(update))
        update[first] = update[first].copy()
        update[first].reshape(-1)[0] = np.nan
    rng = np.random.default_rng(derive_seed(setup.seed, server_round, pid, 2))
    info = RoundInfo(server_round, setup.num_rounds, pid)
    encoded, residual, state = encode_update(
        setup.channel, update, _load(context, RESIDUAL), _load(context, STATE) or {}, rng, info
    )
    # frozen tensors never change: keep no residual for them (a zero copy of the base model)
    _store(context, RESIDUAL, {n: residual[n] for n in setup.sent_names} if residual is not None else None)
    _store(context, STATE, state)
    fields = {"n": int(metrics.pop("num_examples")), **{k: float(v) for k, v in metrics.items()}, **report}
    if _fault(setup, "examples", pid, server_round):
        fields["n"] = 10 * fields["n"] + 1  # a claim FedAvg must not trust
    content = protocol.to_content([encoded], fields, setup.layout, setup.spec)
    if _fault(setup, "corrupt", pid, server_round):
        corrupt(content)
    return Message(content, reply_to=msg)


def corrupt(content: RecordDict) -> None:
    """Cut the last byte of the payload (``faults.corrupt``): the server must refuse it."""
    record = content.config_records[protocol.PAYLOAD]
    if "p" in record:
        blobs = list(record["p"])
        blobs[0] = blobs[0][:-1]
        record["p"] = blobs
        return
    arrays = content.array_records[protocol.ARRAYS]
    name = next(iter(arrays))
    arrays[name] = protocol.to_array_record({name: arrays[name].numpy().reshape(-1)[:-1].copy()})[name]


def client_evaluate(setup: Setup, msg: Message, context: Context) -> Message:
    """Evaluate the received global model on this client's partition."""
    torch.set_num_threads(1)
    pid = partition_id(context)
    received, report = receive_model(setup, msg, context)
    data = _partition(setup, pid)
    metrics = setup.task.evaluate(setup.model_with(received), data)
    fields = {"n": len(data), **{k: float(v) for k, v in metrics.items()}, **report}
    return Message(RecordDict({protocol.PAYLOAD: ConfigRecord(fields)}), reply_to=msg)


def client_query(setup: Setup, msg: Message, context: Context) -> Message:
    """Tell the server which partition this node serves, its size and label histogram."""
    pid = partition_id(context)
    stats = partition_stats([_partition(setup, pid)], setup.task.label_column)[0]
    stats["partition_id"] = pid
    record = ConfigRecord({"stats": json.dumps(stats, default=str)})
    return Message(RecordDict({protocol.PARTITION_STATS: record}), reply_to=msg)


def build_client_app(cfg: dict[str, Any] | None = None) -> ClientApp:
    """The ClientApp; ``cfg`` binds the config (simulation), else it comes from run config."""

    def setup_of(context: Context) -> Setup:
        return get_setup(cfg if cfg is not None else config_from_context(context))

    app = ClientApp(mods=[make_ledger_mod(lambda context: setup_of(context).dense_bytes)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return _named(client_train)(setup_of(context), msg, context)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return _named(client_evaluate)(setup_of(context), msg, context)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return _named(client_query)(setup_of(context), msg, context)

    return app


app = build_client_app()
