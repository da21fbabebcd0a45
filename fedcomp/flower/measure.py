"""Measure a Flower message: ``dense_bytes``, ``payload_bytes`` and ``wire_bytes``.

``wire_bytes`` is the size of a message as Flower 1.42 transfers it between nodes.

Simulation never serializes, so fedcomp computes it with Flower's own serializer and
protocol messages. Flower 1.42 sends a message as a tree of *inflatable objects*, each
pushed or pulled once per unique SHA-256 object id::

    Message (metadata) -> RecordDict -> ArrayRecord -> Array -> ArrayChunk (<= 5 MiB)
                                     -> ConfigRecord / MetricRecord

plus a fleet-API *envelope* that announces the message in its direction of travel: its
metadata and the tree of object ids (the ``PullMessagesResponse`` entry for a message to a
client, the ``PushMessagesRequest`` — with the sending node's id — for a reply).

What is counted
    ``len(deflate())`` of every *unique* object of the tree — object headers (type,
    child ids, body length), the Message metadata, record keys, array metadata (dtype,
    shape, stype), the ``.npy`` header Flower's ``Array`` adds to each numpy array
    (~128 B) and the raw array bytes — plus the envelope's protobuf size. Identical
    objects inside one message are counted once, as Flower transfers them once (e.g.
    two zero bias vectors of the same shape are one Array object). Message ids are
    counted at their deployment length (64-hex object ids; the simulation engine uses
    shorter UUIDs).
What is not counted
    HTTP/gRPC framing and TLS; session ids and heartbeats; control traffic
    that is not a message (the SuperLink's ``PushMessagesResponse`` acknowledgement, which
    lists the object ids it still needs and travels down); fedcomp's own
    bookkeeping record (``fedcomp.ledger``); objects the SuperLink already holds from an
    earlier message of the same run (cross-message de-duplication, which only a
    deployment sees). ``docs/deployment.md`` compares the total with the SuperLink's
    own traffic counters.
"""

from __future__ import annotations

from dataclasses import asdict

from flwr.app import Message, RecordDict
from flwr.common.serde import recorddict_to_proto
from flwr.common.serde_utils import error_to_proto, metadata_to_proto
from flwr.proto.fleet_pb2 import (  # pylint: disable=no-name-in-module
    PullMessagesResponse,
    PushMessagesRequest,
)
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=no-name-in-module
from flwr.proto.message_pb2 import ObjectTree  # pylint: disable=no-name-in-module
from flwr.proto.node_pb2 import Node  # pylint: disable=no-name-in-module
from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    no_object_id_recompute,
)

from fedcomp.core.ledger import LedgerRow, Sizes
from fedcomp.flower.protocol import LEDGER, dense_bytes_of, payload_bytes_of

#: An object id as deployment carries it (hex SHA-256).
OBJECT_ID = "0" * 64


def _proto_metadata(message: Message, message_id: str):
    """Metadata proto with ids at their deployment length."""
    proto = metadata_to_proto(message.metadata)
    proto.message_id = message_id
    if proto.reply_to_message_id:
        proto.reply_to_message_id = OBJECT_ID
    return proto


def content_wire_bytes(content: RecordDict) -> int:
    """Bytes of the unique deflated objects of a RecordDict and everything below it."""
    objects = get_all_nested_objects(content)
    return sum(len(obj.deflate()) for obj in objects.values())


def message_object_bytes(message: Message, content_id: str | None) -> int:
    """Bytes of the deflated Message object itself (metadata + error, no content)."""
    body = ProtoMessage(
        metadata=_proto_metadata(message, ""),  # Flower excludes the id from the object
        content=None,
        error=error_to_proto(message.error) if message.has_error() else None,
    ).SerializeToString(deterministic=True)
    header = HEAD_VALUE_DIVIDER.join(["Message", content_id or "", str(len(body))])
    return len(header.encode("utf-8")) + len(HEAD_BODY_DIVIDER) + len(body)


def envelope_bytes(message: Message, content: RecordDict | None) -> int:
    """Protobuf bytes of the fleet-API messages that announce ``message`` and its object tree."""
    proto = ProtoMessage(
        metadata=_proto_metadata(message, OBJECT_ID),
        content=recorddict_to_proto(RecordDict()) if content is not None else None,
        error=error_to_proto(message.error) if message.has_error() else None,
    )
    children = [get_object_tree(content)] if content is not None else []
    tree = ObjectTree(object_id=OBJECT_ID, children=children)
    if not message.metadata.reply_to_message_id:  # server -> client: pulled by the SuperNode
        return PullMessagesResponse(messages_list=[proto], message_object_trees=[tree]).ByteSize()
    return PushMessagesRequest(
        node=Node(node_id=message.metadata.src_node_id),
        messages_list=[proto],
        message_object_trees=[tree],
        clientapp_runtime_list=[0.0],
    ).ByteSize()


def strip_bookkeeping(content: RecordDict) -> RecordDict:
    """The same records without fedcomp's ledger record (no copies of arrays)."""
    return RecordDict({key: record for key, record in content.items() if key != LEDGER})


def object_bytes(message: Message) -> int:
    """Bytes of the unique deflated objects of ``message`` (bookkeeping excluded)."""
    if not message.has_content():
        return message_object_bytes(message, None)
    content = strip_bookkeeping(message.content)
    return content_wire_bytes(content) + message_object_bytes(message, content.object_id)


def wire_bytes(message: Message) -> int:
    """Objects plus envelope of ``message`` (see module docstring).

    Object ids are hashed once per call (Flower's ``no_object_id_recompute``), not once
    per parent that asks for them.
    """
    with no_object_id_recompute():
        content = strip_bookkeeping(message.content) if message.has_content() else None
        return object_bytes(message) + envelope_bytes(message, content)


def measure(message: Message) -> Sizes:
    """Measure a message: declared dense size, carried array bytes, serialized size."""
    if not message.has_content():
        return Sizes(0, 0, wire_bytes(message))
    return Sizes(
        dense_bytes=dense_bytes_of(message.content),
        payload_bytes=payload_bytes_of(message.content),
        wire_bytes=wire_bytes(message),
    )


def ledger_row(message: Message, **fields: object) -> LedgerRow:
    """A ledger row for ``message`` with its measured sizes and the identifying ``fields``."""
    sizes = measure(message)
    return LedgerRow(**fields, **asdict(sizes))  # type: ignore[arg-type]
