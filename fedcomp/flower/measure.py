"""Measure a Flower message: dense, payload, wire, link, request and id bytes.

``wire_bytes`` is the size of a message as Flower 1.42 transfers it between nodes;
``link_bytes`` what it costs through a SuperLink that keeps objects; ``request_bytes``
the per-object request overhead nobody else counts; ``id_bytes`` the part of wire and
link that the message's random numeric ids take (see :func:`measure`).

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
    earlier message of the same run (that is ``link_bytes``). ``docs/deployment.md``
    compares the totals with the SuperLink's own traffic counters.
"""

from __future__ import annotations

from dataclasses import asdict

from flwr.app import Message, RecordDict
from flwr.common.serde import recorddict_to_proto
from flwr.common.serde_utils import error_to_proto, metadata_to_proto
from flwr.proto.fleet_pb2 import PullMessagesResponse, PushMessagesRequest  # pylint: disable=no-name-in-module
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=no-name-in-module
from flwr.proto.message_pb2 import (  # pylint: disable=no-name-in-module
    ObjectTree,
    PullObjectRequest,
    PullObjectResponse,
    PushObjectRequest,
    PushObjectResponse,
)
from flwr.proto.node_pb2 import Node  # pylint: disable=no-name-in-module
from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_id,
    get_object_tree,
    no_object_id_recompute,
)

from fedcomp.core.ledger import LedgerRow, Sizes
from fedcomp.flower.protocol import LEDGER, empty_content, payload_bytes_of

#: An object id as deployment carries it (hex SHA-256).
OBJECT_ID = "0" * 64
#: A task id as deployment carries it (random 64-bit; see :func:`_proto_metadata`).
TASK_ID = 2**63 + 2**40 + 12345


#: The metadata fields that hold numeric ids: random 64-bit integers in every engine
#: (the SuperLink's own node id, 1, aside), so their varint length varies from run to run.
NUMERIC_IDS = ("run_id", "src_node_id", "dst_node_id", "src_task_id", "dst_task_id")


def _proto_metadata(message: Message, message_id: str, ids: bool = True):
    """Metadata proto with ids at their deployment length (``ids=False``: numeric ids left out).

    Message ids become 64-hex object ids. Task ids are random 64-bit integers in a
    deployment and under ``flwr run`` but absent or 1 under ``run_simulation``; Flower
    1.42 carries the ServerApp's as a message's source and as a reply's destination, and
    a small one is counted as :data:`TASK_ID`, a typical random id (10 varint bytes; a
    random one takes 9 or 10). Node and run ids are random in every engine and kept: a
    simulation's wire bytes predict a deployment's exactly but for ``id_bytes``.
    """
    proto = metadata_to_proto(message.metadata)
    proto.message_id = message_id
    if proto.reply_to_message_id:
        proto.reply_to_message_id = OBJECT_ID
    if not proto.reply_to_message_id and proto.src_task_id < 2**32:
        proto.src_task_id = TASK_ID  # a ServerApp's message carries the ServerApp's task id
    if proto.reply_to_message_id and proto.dst_task_id < 2**32:
        proto.dst_task_id = TASK_ID  # a reply carries it as its destination
    if not ids:
        for name in NUMERIC_IDS:
            proto.ClearField(name)
    return proto


def message_object_bytes(message: Message, content_id: str | None, ids: bool = True) -> int:
    """Bytes of the deflated Message object itself (metadata + error, no content).

    ``ids=False``: the same without the numeric ids (:data:`NUMERIC_IDS`).
    """
    body = ProtoMessage(
        metadata=_proto_metadata(message, "", ids),  # Flower excludes the id from the object
        content=None,
        error=error_to_proto(message.error) if message.has_error() else None,
    ).SerializeToString(deterministic=True)
    header = HEAD_VALUE_DIVIDER.join(["Message", content_id or "", str(len(body))])
    return len(header.encode("utf-8")) + len(HEAD_BODY_DIVIDER) + len(body)


def envelope_bytes(message: Message, content: RecordDict | None, ids: bool = True) -> int:
    """Protobuf bytes of the fleet-API messages that announce ``message`` and its object tree.

    ``ids=False``: the same without the numeric ids (:data:`NUMERIC_IDS`, the sending node's).
    """
    proto = ProtoMessage(
        metadata=_proto_metadata(message, OBJECT_ID, ids),
        content=recorddict_to_proto(RecordDict()) if content is not None else None,
        error=error_to_proto(message.error) if message.has_error() else None,
    )
    children = [get_object_tree(content)] if content is not None else []
    tree = ObjectTree(object_id=OBJECT_ID, children=children)
    if not message.metadata.reply_to_message_id:  # server -> client: pulled by the SuperNode
        return PullMessagesResponse(messages_list=[proto], message_object_trees=[tree]).ByteSize()
    return PushMessagesRequest(
        node=Node(node_id=message.metadata.src_node_id if ids else 0),
        messages_list=[proto],
        message_object_trees=[tree],
        clientapp_runtime_list=[0.0],
    ).ByteSize()


def strip_bookkeeping(content: RecordDict) -> RecordDict:
    """The same records without fedcomp's ledger record (no copies of arrays)."""
    return RecordDict({key: record for key, record in content.items() if key != LEDGER})


def object_bytes(message: Message) -> int:
    """Bytes of the unique deflated objects of ``message`` (bookkeeping excluded)."""
    content = strip_bookkeeping(message.content) if message.has_content() else None
    return measure(message, 0).wire_bytes - envelope_bytes(message, content)


def wire_bytes(message: Message) -> int:
    """Objects plus envelope of ``message`` (see module docstring)."""
    return measure(message, 0).wire_bytes


#: A session id as the SuperLink hands it out (``str(uuid4())``).
SESSION_ID = "0" * 36


def _varint_size(value: int) -> int:
    return max(1, (int(value).bit_length() + 6) // 7)


def object_request_bytes(message: Message, size: int) -> int:
    """The request and response bytes around one object transfer, without its content.

    A SuperNode pulls each object of a message sent to it (``PullObjectRequest``, then a
    ``PullObjectResponse`` whose content the SuperLink counts) and pushes each object of a
    reply the SuperLink does not hold (``PushObjectRequest``, whose content it counts, and
    a ``PushObjectResponse``). The rest of those protobufs — the 64-hex object id, node,
    run and session ids, flags, length prefixes — is counted by neither the SuperLink's
    counters nor ``wire_bytes``.
    """
    run_id = message.metadata.run_id
    content_prefix = (1 + _varint_size(size)) if size else 0
    if not message.metadata.reply_to_message_id:  # pulled by the receiving SuperNode
        request = PullObjectRequest(node=Node(node_id=message.metadata.dst_node_id), run_id=run_id, object_id=OBJECT_ID)
        response = PullObjectResponse(object_found=True, object_available=True)
        return request.ByteSize() + response.ByteSize() + content_prefix
    request = PushObjectRequest(
        node=Node(node_id=message.metadata.src_node_id), run_id=run_id, object_id=OBJECT_ID, session_id=SESSION_ID
    )
    return request.ByteSize() + content_prefix + PushObjectResponse(stored=True).ByteSize()


def measure(message: Message, dense_bytes: int, held: set[str] | None = None) -> Sizes:
    """The byte measures of ``message``.

    Parameters
    ----------
    message
        The message; fedcomp's bookkeeping record is left out of every measure.
    dense_bytes
        What it stands for uncompressed (the message does not carry it): the full model
        for a model-carrying message, 0 for a metrics-only reply.
    held
        Ids of the objects a SuperLink holds when this message is pushed to it (objects of
        earlier replies of the same round, stored and not yet collected by the ServerApp;
        Flower 1.42 does not push those again, but does push an object whose first copy
        is still on its way). The message's content objects are added to it.
        ``None``: nothing is held, ``link_bytes == wire_bytes`` (messages a SuperNode
        pulls: every receiver pulls every object).

    Returns
    -------
    Sizes
        ``payload_bytes`` read from the message; ``wire_bytes`` its unique objects plus
        its envelope; ``link_bytes`` the same without the objects in ``held``;
        ``request_bytes`` :func:`object_request_bytes` for every object transferred;
        ``id_bytes`` what the numeric ids (:data:`NUMERIC_IDS`) add to ``wire_bytes`` and
        ``link_bytes``: those ids are random 64-bit integers (9 or 10 varint bytes), so
        ``wire_bytes - id_bytes`` (and ``link_bytes - id_bytes``) is the same in every run
        and engine for one config and seed; only ``id_bytes`` varies, by a few bytes per message.
    """
    payload = payload_bytes_of(message.content) if message.has_content() else 0
    with no_object_id_recompute():
        content = strip_bookkeeping(message.content) if message.has_content() else None
        sizes = {}
        if content is not None:
            sizes = {oid: len(obj.deflate()) for oid, obj in get_all_nested_objects(content).items()}
        content_id = content.object_id if content is not None else None
        own = message_object_bytes(message, content_id)
        framing = own + envelope_bytes(message, content)
        wire = sum(sizes.values()) + framing
        ids = framing - message_object_bytes(message, content_id, ids=False) - envelope_bytes(message, content, ids=False)
        # What the SuperLink stores is the real tree: with the bookkeeping record the
        # root RecordDict is another object (and unique to the reply), the rest the same.
        # Its id is hashed from its own bytes (the children's ids are cached by now): an
        # id cached before the bookkeeping was added equals the stripped tree's.
        real = {content.object_id: get_object_id(message.content.deflate())} if content is not None else {}
    skipped = {oid for oid in sizes if held is not None and real.get(oid, oid) in held}
    link = wire - sum(sizes[oid] for oid in skipped)
    if held is not None:
        held.update(real.get(oid, oid) for oid in sizes)
    requests = object_request_bytes(message, own) + sum(
        object_request_bytes(message, size) for oid, size in sizes.items() if oid not in skipped
    )
    return Sizes(
        dense_bytes=int(dense_bytes), payload_bytes=payload, wire_bytes=wire, link_bytes=link, request_bytes=requests,
        id_bytes=ids,
    )  # fmt: skip


def ledger_row(message: Message, dense_bytes: int, held: set[str] | None = None, **fields: object) -> LedgerRow:
    """A ledger row for ``message`` with its measured sizes and the identifying ``fields``."""
    return LedgerRow(**fields, **asdict(measure(message, dense_bytes, held)))  # type: ignore[arg-type]


def floor_bytes(message: Message, layout: str, fields: dict[str, int | float]) -> int:
    """Flower's fixed cost of a model-carrying message like ``message``.

    The wire bytes, with the installed Flower, of a message with the same metadata in
    fedcomp's ``layout`` whose payload is empty and whose only scalar fields are
    ``fields`` (``n`` for a reply: what FedAvg needs). A real message's wire bytes minus
    its payload exceed this by its other scalar fields (train metrics, checksums) and
    the few varint bytes its payload's length takes.
    """
    return wire_bytes(Message(metadata=message.metadata, content=empty_content(layout, fields)))
