"""What fedcomp puts in Flower messages: record names, the two layouts, packing helpers.

Every model-carrying message holds one ConfigRecord, ``fedcomp``, with the payload and
a few small scalar fields; the server round travels in the message's ``group_id``.

``wire.layout=packed`` (default)
    ``fedcomp["p"]`` is a list of byte strings, one per encoded payload, each in the
    packed format of :mod:`fedcomp.compressors.packing` (one contiguous byte string with
    a compact header; the model's names, shapes and dtypes are never sent). One record
    object per message: the cheapest framing Flower allows.
``wire.layout=arrays``
    The ablation that shows what per-array framing costs: one Flower ``Array`` per
    encoded component in the ArrayRecord ``fedcomp.arrays`` (keys ``name``, or
    ``i/name`` when a message carries several payloads) and the decoding meta as JSON
    in ``fedcomp["meta"]``.

Scalar fields of ``fedcomp`` (absent when unused): ``n`` examples trained on and the
train metrics (replies); ``v`` the version a downlink starts from or a reply holds,
``t`` the version it leads to, ``h`` a model checksum, ``d`` a dense re-sync
(compressed downlink, see :mod:`fedcomp.compressors.channel`).

``fedcomp.ledger`` (ConfigRecord, replies only) carries the client's own ledger rows:
bookkeeping, not federated traffic, excluded from every byte measure. A federated
evaluation reply carries only scalar fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedcomp.compressors.base import DecodeError, Encoded, Tensors
from fedcomp.compressors.packing import ModelSpec, pack, unpack

PAYLOAD = "fedcomp"
ARRAYS = "fedcomp.arrays"
LEDGER = "fedcomp.ledger"
#: The query reply: the partition a node serves, its size and label histogram.
PARTITION_STATS = "fedcomp.partition"
#: Run-config key holding the fedcomp config as JSON (deployment, ``flwr run``).
RUN_CONFIG_KEY = "fedcomp-config"
LAYOUTS = ("packed", "arrays")

Scalar = int | float | bool


def to_array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Wrap numpy arrays (in order) into an ArrayRecord without changing them."""
    return ArrayRecord({name: Array(np.ascontiguousarray(arr)) for name, arr in arrays.items()})


def from_array_record(record: ArrayRecord) -> Tensors:
    """Numpy arrays of an ArrayRecord, in order."""
    return {name: array.numpy() for name, array in record.items()}


def to_content(
    payloads: list[Encoded], fields: Mapping[str, Scalar], layout: str, spec: ModelSpec
) -> RecordDict:
    """The records of a message carrying ``payloads`` and scalar ``fields``."""
    if layout not in LAYOUTS:
        raise ValueError(f"wire.layout: must be one of {list(LAYOUTS)}, got {layout!r}")
    record = ConfigRecord()
    content = RecordDict({PAYLOAD: record})
    if layout == "packed":
        record["p"] = [pack(encoded, spec) for encoded in payloads]
    else:
        prefix = len(payloads) > 1
        arrays = {
            (f"{i}/{name}" if prefix else name): value
            for i, encoded in enumerate(payloads)
            for name, value in encoded.arrays.items()
        }
        content[ARRAYS] = to_array_record(arrays)
        record["meta"] = json.dumps([e.meta for e in payloads], separators=(",", ":"))
    for key, value in fields.items():
        record[key] = value
    return content


def from_content(content: RecordDict, layout: str, spec: ModelSpec) -> tuple[list[Encoded], dict[str, Scalar]]:
    """The payloads and scalar fields of a message built by :func:`to_content`.

    Raises
    ------
    DecodeError
        If the records are missing or malformed.
    """
    record = content.config_records.get(PAYLOAD)
    if record is None:
        raise DecodeError(f"message carries no {PAYLOAD!r} record")
    fields = {k: v for k, v in record.items() if k not in ("p", "meta")}
    if layout == "packed":
        blobs = record.get("p")
        if not isinstance(blobs, list) or not all(isinstance(b, bytes) for b in blobs):
            raise DecodeError(f"{PAYLOAD}['p'] is not a list of byte strings")
        return [unpack(blob, spec) for blob in blobs], fields
    if ARRAYS not in content.array_records:
        raise DecodeError(f"message carries no {ARRAYS!r} record")
    try:
        metas = json.loads(str(record["meta"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise DecodeError(f"{PAYLOAD}['meta'] is not valid JSON: {err}") from None
    if not isinstance(metas, list) or not all(isinstance(m, dict) for m in metas):
        raise DecodeError(f"{PAYLOAD}['meta'] is not a list of objects")
    arrays = from_array_record(content.array_records[ARRAYS])
    if len(metas) == 1:
        return [Encoded(arrays=arrays, meta=metas[0])], fields
    payloads = []
    for i, meta in enumerate(metas):
        prefix = f"{i}/"
        mine = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        payloads.append(Encoded(arrays=mine, meta=meta))
    return payloads, fields


def payload_bytes_of(content: RecordDict) -> int:
    """Bytes of the payload a message carries: the packed strings, or the arrays' ``nbytes``."""
    total = 0
    record = content.config_records.get(PAYLOAD)
    if record is not None and isinstance(record.get("p"), list):
        total += sum(len(blob) for blob in record["p"])
    arrays = content.array_records.get(ARRAYS)
    if arrays is not None:
        for array in arrays.values():
            total += int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return total


def empty_content(layout: str, fields: Mapping[str, Scalar]) -> RecordDict:
    """A model-carrying message's records with an empty payload (Flower's floor)."""
    record = ConfigRecord({"p": [b""]} if layout == "packed" else {"meta": "[{}]"})
    content = RecordDict({PAYLOAD: record})
    if layout == "arrays":
        content[ARRAYS] = ArrayRecord()
    for key, value in fields.items():
        record[key] = value
    return content


def carries_payload(content: RecordDict) -> bool:
    """Whether a message carries a model payload (not only scalar fields)."""
    record = content.config_records.get(PAYLOAD)
    return ARRAYS in content.array_records or (record is not None and "p" in record)
