"""wire_bytes against Flower's own serialization of the same message."""

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message import remove_content_from_message
from flwr.common.serde import message_to_proto
from flwr.proto.fleet_pb2 import PullMessagesResponse
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
)
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from fedcomp.compressors.base import Encoded
from fedcomp.flower import protocol
from fedcomp.flower.measure import (
    envelope_bytes,
    message_object_bytes,
    object_bytes,
    wire_bytes,
)


def _message(arrays, dst=123456789):
    content = protocol.pack(Encoded(arrays, {"k": 1}), dense_bytes=999)
    content[protocol.CONFIG] = ConfigRecord({"server-round": 3})
    return Message(content, dst, "train")


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


def test_metrics_only_reply_has_a_small_wire_size():
    query = _message({"w": np.ones(10, dtype=np.float32)})
    reply = Message(RecordDict({"metrics": MetricRecord({"loss": 0.5})}), reply_to=query)
    assert 0 < object_bytes(reply) == _flower_serialized_size(reply)[0] < 1000
    assert object_bytes(reply) < wire_bytes(reply) < 2000
