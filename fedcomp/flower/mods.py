"""The client-side ledger: a ClientApp mod that measures every model-carrying message.

It measures the incoming message (down) and the reply (up) with the same functions the
server uses (:func:`fedcomp.flower.measure.measure`) and attaches both rows to the reply in the
``fedcomp.ledger`` record, which every byte measure excludes. The server stores them
with ``recorded_by = client``. A ClientApp that raises sends Flower's error reply, which
has no content: its client rows cannot travel and only the server's rows (status
``failed``) record it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.typing import ClientAppCallable

from fedcomp.core.ledger import LedgerRow
from fedcomp.flower.measure import measure
from fedcomp.flower.protocol import CONFIG, LEDGER

TRACKED = (MessageType.TRAIN, MessageType.EVALUATE)


def ledger_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Record the down and up rows of train/evaluate messages on the client side."""
    if msg.metadata.message_type not in TRACKED:
        return call_next(msg, context)
    down = measure(msg)
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    up = measure(reply)
    fields = {
        "run_id": "",
        "round": int(msg.content[CONFIG]["server-round"]),
        "phase": msg.metadata.message_type,
        "partition_id": int(context.node_config.get("partition-id", -1)),
        "node_id": int(context.node_id),
        "recorded_by": "client",
    }
    rows = [
        asdict(LedgerRow(direction="down", **fields, **asdict(down))),
        asdict(LedgerRow(direction="up", **fields, **asdict(up))),
    ]
    reply.content[LEDGER] = ConfigRecord({"rows": json.dumps(rows)})
    return reply
