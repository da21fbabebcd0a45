"""``wire_bytes``: the size of a message as Flower 1.42 serializes it for gRPC.

Simulation never serializes, so fedcomp computes it with Flower's own serializer.
Flower 1.42 sends a message as a tree of *inflatable objects*, each pushed or pulled
once per unique SHA-256 object id::

    Message (metadata) -> RecordDict -> ArrayRecord -> Array -> ArrayChunk (<= 5 MiB)
                                     -> ConfigRecord / MetricRecord

What is counted
    ``len(deflate())`` of every *unique* object of the tree — object headers (type,
    child ids, body length), the Message metadata (message id excluded, as Flower
    does), record keys, array metadata (dtype, shape, stype), the ``.npy`` header
    Flower's ``Array`` adds to each numpy array (~128 B), and the raw array bytes.
    Identical objects inside one message are counted once, as Flower transfers them
    once (e.g. two zero bias vectors of the same shape are one Array object).
What is not counted
    gRPC/HTTP-2 framing and TLS; the PushMessages/PullMessages envelope (message
    proto and object-id tree) and PushObject/PullObject request fields (ids, node
    and run ids); fedcomp's own bookkeeping record (``fedcomp.ledger``). The
    deployment recipe compares this figure with the SuperLink's traffic counters.
"""

from __future__ import annotations

from flwr.app import Message, RecordDict
from flwr.common.serde_utils import error_to_proto, metadata_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=no-name-in-module
from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedcomp.fl.records import LEDGER


def content_wire_bytes(content: RecordDict) -> int:
    """Bytes of the unique deflated objects of a RecordDict and everything below it."""
    objects = get_all_nested_objects(content)
    return sum(len(obj.deflate()) for obj in objects.values())


def message_object_bytes(message: Message, content_id: str | None) -> int:
    """Bytes of the deflated Message object itself (metadata + error, no content)."""
    proto_metadata = metadata_to_proto(message.metadata)
    proto_metadata.message_id = ""  # Flower excludes it from the object
    body = ProtoMessage(
        metadata=proto_metadata,
        content=None,
        error=error_to_proto(message.error) if message.has_error() else None,
    ).SerializeToString(deterministic=True)
    header = HEAD_VALUE_DIVIDER.join(["Message", content_id or "", str(len(body))])
    return len(header.encode("utf-8")) + len(HEAD_BODY_DIVIDER) + len(body)


def strip_bookkeeping(content: RecordDict) -> RecordDict:
    """The same records without fedcomp's ledger record (no copies of arrays)."""
    return RecordDict({key: record for key, record in content.items() if key != LEDGER})


def wire_bytes(message: Message) -> int:
    """Serialized size of ``message`` as Flower transfers it (see module docstring)."""
    if not message.has_content():
        return message_object_bytes(message, None)
    content = strip_bookkeeping(message.content)
    return content_wire_bytes(content) + message_object_bytes(message, content.object_id)
