"""The client-side ledger: a ClientApp mod that measures every model-carrying message.

It measures the incoming message (down) and the reply (up) with the same functions the
server uses (:func:`fedcomp.flower.measure.measure`) and attaches both rows to the reply
in the ``fedcomp.ledger`` record, which every byte measure excludes. The server stores
them with ``recorded_by = client``. A ClientApp that raises sends Flower's error reply,
which has no content: its client rows cannot travel and only the server's rows (status
``failed``) record it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedcomp.core.ledger import LedgerRow
from fedcomp.flower.measure import measure
from fedcomp.flower.protocol import LEDGER, carries_payload

TRACKED = (MessageType.TRAIN, MessageType.EVALUATE)


def make_ledger_mod(dense_bytes_of: Callable[[Context], int]) -> Mod:
    """A mod recording the down and up rows of train/evaluate messages.

    ``dense_bytes_of(context)`` is the model's dense size, which messages do not carry.
    """

    def ledger_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type not in TRACKED:
            return call_next(msg, context)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        dense = dense_bytes_of(context)
        fields = {
            "run_id": "",
            "round": int(msg.metadata.group_id),
            "phase": msg.metadata.message_type,
            "partition_id": int(context.node_config.get("partition-id", -1)),
            "node_id": int(context.node_id),
            "recorded_by": "client",
        }
        down = measure(msg, dense)
        up = measure(reply, dense if carries_payload(reply.content) else 0)
        rows = [
            asdict(LedgerRow(direction="down", **fields, **asdict(down))),
            asdict(LedgerRow(direction="up", **fields, **asdict(up))),
        ]
        reply.content[LEDGER] = ConfigRecord({"rows": json.dumps(rows)})
        return reply

    return ledger_mod
