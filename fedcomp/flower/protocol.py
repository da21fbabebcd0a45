"""Names of the records fedcomp puts in Flower messages, and packing helpers.

A model-carrying message holds:

- ``fedcomp.arrays`` (ArrayRecord): the payload arrays, exactly what the transform emitted;
- ``fedcomp.codec`` (ConfigRecord): ``meta`` (JSON string the decoder needs) and
  ``dense_bytes`` (fp32 bytes of the full model the message stands for);
- ``config`` (ConfigRecord): ``server-round`` and per-message settings;
- ``metrics`` (MetricRecord): replies only, e.g. ``num_examples``, ``train_loss``;
- ``fedcomp.ledger`` (ConfigRecord): replies only, the client's own ledger rows. It is
  bookkeeping, not federated traffic, and is excluded from every byte measure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedcomp.compressors.base import DecodeError, Encoded

ARRAYS = "fedcomp.arrays"
CODEC = "fedcomp.codec"
CONFIG = "config"
METRICS = "metrics"
LEDGER = "fedcomp.ledger"
#: The query reply: the partition a node serves, its size and label histogram.
PARTITION_STATS = "fedcomp.partition"
#: Run-config key holding the fedcomp config as JSON (deployment, ``flwr run``).
RUN_CONFIG_KEY = "fedcomp-config"


def to_array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Wrap numpy arrays (in order) into an ArrayRecord without changing them."""
    return ArrayRecord({name: Array(np.ascontiguousarray(arr)) for name, arr in arrays.items()})


def from_array_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Numpy arrays of an ArrayRecord, in order."""
    return {name: array.numpy() for name, array in record.items()}


def array_record_nbytes(record: ArrayRecord) -> int:
    """Sum of ``nbytes`` of the arrays a record carries (from dtype and shape, no copy)."""
    total = 0
    for array in record.values():
        total += int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return total


def pack(encoded: Encoded, dense_bytes: int) -> RecordDict:
    """Records of a model-carrying message: payload arrays plus codec information."""
    return RecordDict(
        {
            ARRAYS: to_array_record(encoded.arrays),
            CODEC: ConfigRecord(
                {"meta": json.dumps(encoded.meta, separators=(",", ":")), "dense_bytes": dense_bytes}
            ),
        }
    )


def unpack(content: RecordDict) -> Encoded:
    """The :class:`Encoded` payload of a model-carrying message.

    Raises
    ------
    DecodeError
        If the message lacks the payload records or the meta is not valid JSON.
    """
    if ARRAYS not in content.array_records or CODEC not in content.config_records:
        raise DecodeError(f"message carries no {ARRAYS}/{CODEC} records")
    try:
        meta = json.loads(str(content.config_records[CODEC]["meta"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise DecodeError(f"codec meta is not valid JSON: {err}") from err
    return Encoded(arrays=from_array_record(content.array_records[ARRAYS]), meta=meta)


def dense_bytes_of(content: RecordDict) -> int:
    """The ``dense_bytes`` a model-carrying message declares (0 for metrics-only replies)."""
    codec = content.config_records.get(CODEC)
    return int(codec["dense_bytes"]) if codec is not None and "dense_bytes" in codec else 0


def payload_bytes_of(content: RecordDict) -> int:
    """Sum of ``nbytes`` of the payload arrays a message carries."""
    record = content.array_records.get(ARRAYS)
    return array_record_nbytes(record) if record is not None else 0
