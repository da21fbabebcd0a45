"""wire_bytes against Flower's own serialization of the same message."""

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message import remove_content_from_message
from flwr.common.serde import message_to_proto
from flwr.proto.fleet_pb2 import PullMessagesResponse
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from fedcomp.compressors.base import Encoded
from fedcomp.compressors.packing import ModelSpec
from fedcomp.flower import protocol
from fedcomp.flower.measure import envelope_bytes, floor_bytes, measure, message_object_bytes, object_bytes, wire_bytes


def _message(arrays, dst=123456789, layout="arrays"):
    content = protocol.to_content([Encoded(arrays, {"k": 1})], {}, layout, ModelSpec.of(arrays))
    message = Message(content, dst, "train", group_id="3")
    message.metadata.__dict__["_src_task_id"] = 2**63 + 7  # a task id as a deployment draws it
    return message


def _flower_serialized_size(message):
    """Bytes of every unique object Flower deflates for this message."""
    objects = get_all_nested_objects(message)
    return sum(len(obj.deflate()) for obj in objects.values()), objects


def test_wire_equals_flowers_serializer():
    rng = np.random.default_rng(0)
    msg = _message({"w": rng.standard_normal((30, 20)).astype(np.float32), "b": np.arange(7, dtype=np.int32)})
    expected, objects = _flower_serialized_size(msg)
    assert object_bytes(msg) == expected
    assert wire_bytes(msg) == expected + envelope_bytes(msg, msg.content)
    assert message_object_bytes(msg, msg.content.object_id) == len(msg.deflate())
    # the objects counted are exactly what Flower needs to rebuild the message
    contents = {oid: obj.deflate() for oid, obj in objects.items()}
    rebuilt = inflate_object_from_contents(msg.object_id, contents, keep_object_contents=False)
    np.testing.assert_array_equal(rebuilt.content[protocol.ARRAYS]["w"].numpy(), msg.content[protocol.ARRAYS]["w"].numpy())


def test_identical_arrays_are_counted_once():
    zeros = np.zeros(1000, dtype=np.float32)
    rng = np.random.default_rng(1)
    distinct = _message({"a": rng.standard_normal(1000).astype(np.float32), "b": rng.standard_normal(1000).astype(np.float32)})
    same = _message({"a": zeros, "b": zeros.copy()})
    # the second zero array is the same object as the first: only its key and ref remain
    assert wire_bytes(distinct) - wire_bytes(same) > 4000
    assert object_bytes(same) == _flower_serialized_size(same)[0]


def test_large_arrays_are_chunked_like_flower():
    big = np.ones(3_000_000, dtype=np.float32)  # 12 MB -> three 5 MiB chunks (two identical)
    big[-1] = 2.0
    msg = _message({"big": big})
    assert object_bytes(msg) == _flower_serialized_size(msg)[0]


def test_envelope_equals_flowers_pull_response():
    """What the SuperLink sends a SuperNode to announce a message (ids at deployment length)."""
    msg = _message({"w": np.ones((4, 4), np.float32), "b": np.zeros(4, np.float32)})
    msg.metadata.__dict__["_message_id"] = msg.object_id  # as a deployment sets it
    flower = PullMessagesResponse(
        messages_list=[message_to_proto(remove_content_from_message(msg))],
        message_object_trees=[get_object_tree(msg)],
    ).ByteSize()
    assert envelope_bytes(msg, msg.content) == flower
    # one id per object in the tree: the envelope grows with the number of tensors
    wider = _message({f"t{i}": np.full(4, i, np.float32) for i in range(10)})
    assert envelope_bytes(wider, wider.content) - envelope_bytes(msg, msg.content) > 8 * 2 * 64


def test_ledger_record_is_excluded():
    msg = _message({"w": np.ones(10, dtype=np.float32)})
    before = wire_bytes(msg)
    msg.content[protocol.LEDGER] = ConfigRecord({"rows": "[" + "x" * 500 + "]"})
    assert wire_bytes(msg) == before


def test_packed_message_equals_flowers_serializer_and_costs_the_floor_plus_payload():
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((30, 20)).astype(np.float32), "b": np.arange(7, dtype=np.int32)}
    msg = _message(arrays, layout="packed")
    expected, objects = _flower_serialized_size(msg)
    assert object_bytes(msg) == expected
    assert [type(o).__name__ for o in objects.values()].count("ConfigRecord") == 1
    sizes = measure(msg, dense_bytes=2428)
    assert sizes.dense_bytes == 2428
    # the packed string: format byte, kind byte, varint header length, header, 2,428 B of data
    blob = msg.content[protocol.PAYLOAD]["p"][0]
    assert sizes.payload_bytes == len(blob) and len(blob) > 30 * 20 * 4 + 7 * 4
    framing = sizes.wire_bytes - sizes.payload_bytes
    floor = floor_bytes(msg, "packed", {})
    assert 0 < framing - floor <= 8  # protobuf length prefixes of a 2.5 kB string


def test_packed_framing_is_far_below_per_array_framing():
    arrays = {f"t{i}": np.full(50, i, np.float32) for i in range(8)}
    per_array = measure(_message(arrays, layout="arrays"), 0)
    packed = measure(_message(arrays, layout="packed"), 0)
    assert (per_array.wire_bytes - per_array.payload_bytes) - (packed.wire_bytes - packed.payload_bytes) > 8 * 400


def test_metrics_only_reply_has_a_small_wire_size():
    query = _message({"w": np.ones(10, dtype=np.float32)})
    query.metadata.__dict__["_message_id"] = query.object_id  # as the SuperLink sets it
    reply = Message(RecordDict({"metrics": MetricRecord({"loss": 0.5})}), reply_to=query)
    assert 0 < object_bytes(reply) == _flower_serialized_size(reply)[0] < 1000
    assert object_bytes(reply) < wire_bytes(reply) < 2000


def _reply(content, node_id=42):
    down = Message(RecordDict(), node_id, "train", group_id="1")
    down.metadata.__dict__["_message_id"] = "ab" * 32  # the id it had when pushed
    reply = Message(content, reply_to=down)
    reply.metadata.__dict__["_src_node_id"] = node_id
    return reply


def test_link_bytes_leave_out_what_the_superlink_already_holds():
    model = {"w": np.arange(1000, dtype=np.float32)}
    spec = ModelSpec.of(model)
    first = _reply(protocol.to_content([Encoded(model, {})], {"n": 0}, "packed", spec), 1)
    second = _reply(protocol.to_content([Encoded(model, {})], {"n": 0}, "packed", spec), 2)
    held: set[str] = set()
    one, two = measure(first, 4000, held), measure(second, 4000, held)
    assert one.link_bytes == one.wire_bytes  # nothing held yet
    record = second.content[protocol.PAYLOAD]
    assert two.wire_bytes - two.link_bytes == len(record.deflate()) + len(second.content.deflate())
    assert two.link_bytes < 1000 < two.wire_bytes
    # the second reply pushes only its Message object: one request instead of three
    assert two.request_bytes < one.request_bytes / 2


def test_request_bytes_are_the_object_requests_around_each_transfer():
    from flwr.proto.message_pb2 import PullObjectRequest, PullObjectResponse
    from flwr.proto.node_pb2 import Node

    msg = _message({"w": np.ones(10, np.float32)}, dst=7, layout="packed")
    objects = get_all_nested_objects(msg)
    expected = 0
    for obj in objects.values():
        content = obj.deflate()
        request = PullObjectRequest(node=Node(node_id=7), run_id=msg.metadata.run_id, object_id="0" * 64)
        response = PullObjectResponse(object_found=True, object_available=True, object_content=content)
        expected += request.ByteSize() + response.ByteSize() - len(content)
    assert measure(msg, 0).request_bytes == expected
    assert len(objects) == 3  # Message, RecordDict, one ConfigRecord


def test_replies_with_their_own_bookkeeping_share_only_the_payload_record():
    model = {"w": np.arange(1000, dtype=np.float32)}
    spec = ModelSpec.of(model)
    replies = []
    for node in (1, 2):
        content = protocol.to_content([Encoded(model, {})], {"n": 0}, "packed", spec)
        _ = content.object_id  # an id computed (and cached) before the bookkeeping is added
        content[protocol.LEDGER] = ConfigRecord({"rows": f"[{node}]"})  # each client's own rows
        replies.append(_reply(content, node))
    held: set[str] = set()
    first, second = (measure(r, 0, held) for r in replies)
    record = replies[1].content[protocol.PAYLOAD]
    # the RecordDict differs (its ledger ref) and is pushed; the payload record is held
    assert second.wire_bytes - second.link_bytes == len(record.deflate())
    assert first.link_bytes == first.wire_bytes


def _with_ids(message, run_id, node_id, task_id):
    metadata = message.metadata.__dict__
    metadata["_run_id"] = run_id
    metadata["_src_task_id" if not message.metadata.reply_to_message_id else "_dst_task_id"] = task_id
    metadata["_dst_node_id" if not message.metadata.reply_to_message_id else "_src_node_id"] = node_id
    return message


def test_id_bytes_are_the_numeric_ids_and_the_rest_is_the_same_for_any_ids():
    model = {"w": np.ones(10, np.float32)}
    spec = ModelSpec.of(model)

    def down(run_id, node_id, task_id):
        message = Message(protocol.to_content([Encoded(model, {})], {}, "packed", spec), node_id, "train", group_id="1")
        message.metadata.__dict__["_src_node_id"] = 1  # the SuperLink's own node id
        return _with_ids(message, run_id, node_id, task_id)

    def up(run_id, node_id, task_id):
        reply = _reply(protocol.to_content([Encoded(model, {})], {"n": 5}, "packed", spec), node_id)
        reply.metadata.__dict__["_dst_node_id"] = 1
        return _with_ids(reply, run_id, node_id, task_id)

    ten, nine = 2**63 + 11, 2**56 + 11  # 10 and 9 varint bytes
    # down: run id, source node (1: one byte), destination node and the ServerApp's task id,
    # each with its 1 B field tag, in the Message object and again in the pull response,
    # where they also lengthen two length prefixes: the metadata's (129 B with 10-byte ids,
    # 126 B with 9-byte ones, 94 B without: a second varint byte from 128 B) and the listed
    # message's (132, 128 and 96 B)
    long_down, short_down = measure(down(ten, ten, ten), 0), measure(down(nine, nine, nine), 0)
    assert long_down.id_bytes == 2 * (11 + 2 + 11 + 11) + 2
    assert short_down.id_bytes == 2 * (10 + 2 + 10 + 10) + 1
    # up: the same ids (source and destination swapped), and the sending node's id once
    # more in the push request's Node (1 B tag + varint); in the Message object they
    # lengthen the metadata's length prefix (129 B, 126 B, 94 B without) and the body
    # length written in the object's header (132 and 128 B against 96: a third digit)
    long_up, short_up = measure(up(ten, ten, ten), 0), measure(up(nine, nine, nine), 0)
    assert long_up.id_bytes == 2 * (11 + 11 + 2 + 11) + 11 + 2
    assert short_up.id_bytes == 2 * (10 + 10 + 2 + 10) + 10 + 1
    # everything else is the same to the byte, whatever the ids
    for long, short in ((long_down, short_down), (long_up, short_up)):
        assert long.wire_bytes - short.wire_bytes == long.id_bytes - short.id_bytes > 0
        assert long.wire_bytes - long.id_bytes == short.wire_bytes - short.id_bytes
        assert long.link_bytes - long.id_bytes == short.link_bytes - short.id_bytes
