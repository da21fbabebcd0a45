"""The client ledger mod, and how it relates to Flower's own size mods."""

import json
import logging
import re

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.clientapp.mod import arrays_size_mod, message_size_mod

from fedcomp.compressors.base import Encoded
from fedcomp.compressors.packing import ModelSpec
from fedcomp.flower import protocol
from fedcomp.flower.measure import measure
from fedcomp.flower.mods import make_ledger_mod

ledger_mod = make_ledger_mod(lambda context: 4000)

NPY_HEADER = 128  # np.save header of a small array (Flower's Array data = header + raw bytes)


def _context():
    return Context(run_id=1, node_id=77, node_config={"partition-id": 3}, state=RecordDict(), run_config={})


def _content(arrays, fields=None):
    return protocol.to_content([Encoded(arrays, {})], fields or {}, "arrays", ModelSpec.of(arrays))


def _train_message(arrays):
    return Message(_content(arrays), 77, "train", group_id="2")


def _reply_with(arrays):
    def call_next(msg, ctx):
        return Message(_content(arrays, {"n": 10}), reply_to=msg)

    return call_next


def test_ledger_mod_attaches_down_and_up_rows_equal_to_measure():
    arrays = {"w": np.ones((10, 10), np.float32), "b": np.zeros(10, np.float32)}
    msg = _train_message(arrays)
    reply = ledger_mod(msg, _context(), _reply_with({"w/values": np.ones(5, np.float32)}))
    rows = json.loads(reply.content.config_records[protocol.LEDGER]["rows"])
    down, up = rows
    assert (down["direction"], up["direction"]) == ("down", "up")
    assert down["partition_id"] == 3 and down["round"] == 2 and down["recorded_by"] == "client"
    assert down["dense_bytes"] == 4000 and down["payload_bytes"] == 440
    assert down["wire_bytes"] == measure(msg, 4000).wire_bytes
    assert up["dense_bytes"] == 4000 and up["payload_bytes"] == 20
    assert up["wire_bytes"] == measure(reply, 4000).wire_bytes  # ledger record excluded


def test_flower_size_mods_versus_the_ledger(caplog):
    """Flower's mods count .npy bytes + key names per record; the ledger's payload is raw nbytes.

    For an ArrayRecord: count_bytes = payload_bytes + 128 B .npy header per array + len(key).
    """
    arrays = {"w": np.arange(100, dtype=np.float32), "idx": np.arange(7, dtype=np.int32)}
    msg = _train_message(arrays)
    sent = {"w/values": np.ones(25, np.float32)}
    logger = logging.getLogger("flwr")
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="flwr"):
        arrays_size_mod(msg, _context(), _reply_with(sent))
        message_size_mod(msg, _context(), _reply_with(sent))
    text = caplog.text
    received = int(re.search(r"Total array elements received: (\d+) bytes", text).group(1))
    sent_bytes = int(re.search(r"Total array elements sent: (\d+) bytes", text).group(1))
    incoming = int(re.search(r"Incoming message size: (\d+) bytes", text).group(1))

    down = measure(msg, 0)
    assert received == down.payload_bytes + NPY_HEADER * 2 + len("w") + len("idx")
    assert sent_bytes == 100 + NPY_HEADER + len("w/values")
    # message_size_mod adds the config records' counted bytes; the wire size adds object
    # headers and metadata on top of both
    codec_and_config = sum(
        r.count_bytes() for k, r in msg.content.items() if k != protocol.ARRAYS
    )
    assert incoming == received + codec_and_config
    assert down.wire_bytes > incoming
