"""The byte ledger: one row per model-carrying message, per direction, per recording side.

Columns (the DESIGN.md contract)
--------------------------------
run_id, round, phase (train|evaluate), partition_id, node_id, direction (down|up),
recorded_by (server|client), dense_bytes, payload_bytes, wire_bytes, status (ok|failed),
plus ``kind`` (server rows: ``model`` the global weights, ``current`` nothing new,
``delta`` one compressed downlink change, ``catch-up`` several, ``resync`` a dense re-sync; ``update`` or
``metrics`` for replies) and ``error`` (why a row failed, one line, empty otherwise).

Byte measures
-------------
dense_bytes
    What the message would cost uncompressed: ``sum(numel × element_size)`` of the
    fp32 tensors of the full model it stands for (a frozen or sparsified tensor still
    counts). For the identity compressor the run total equals the formula exactly.
payload_bytes
    The bytes of the payload actually carried, read from the message: with
    ``wire.layout=packed`` the length of each packed byte string (values, indices,
    bitmaps, scales and the packed header — 2 B for an uncompressed model); with
    ``wire.layout=arrays`` ``sum(nbytes)`` of the arrays (their JSON meta travels in a
    config record and counts only in wire_bytes).
wire_bytes, link_bytes, request_bytes, id_bytes
    The message as Flower serializes it; what it costs through a SuperLink that keeps
    objects; the object requests around it; the part of wire and link its random
    numeric ids take (see :mod:`fedcomp.flower.measure`, which measures messages; this
    module only holds and sums the rows).

A metrics-only reply (federated evaluation) has dense and payload 0 and a small wire size.
Byte totals are computed here once (:func:`totals`) and read everywhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

COLUMNS = [
    "run_id",
    "round",
    "phase",
    "partition_id",
    "node_id",
    "direction",
    "recorded_by",
    "kind",
    "dense_bytes",
    "payload_bytes",
    "wire_bytes",
    "link_bytes",
    "request_bytes",
    "id_bytes",
    "status",
    "error",
]
MEASURES = ["dense_bytes", "payload_bytes", "wire_bytes", "link_bytes", "request_bytes"]


def summed() -> list[str]:
    """Every byte column summed per direction: :data:`MEASURES` and ``id_bytes`` (a part of
    wire and link, not traffic of its own: it has no ratio and no table column). A function,
    not a constant, so a measure added to :data:`MEASURES` is summed too."""
    return [*MEASURES, "id_bytes"]


@dataclass
class Sizes:
    """The byte measures of one message (see the module docstring)."""

    dense_bytes: int
    payload_bytes: int
    wire_bytes: int
    link_bytes: int
    request_bytes: int
    id_bytes: int


@dataclass
class LedgerRow:
    """One message, one direction, seen from one side."""

    run_id: str
    round: int
    phase: str
    partition_id: int
    node_id: int
    direction: str
    recorded_by: str
    dense_bytes: int
    payload_bytes: int
    wire_bytes: int
    link_bytes: int
    request_bytes: int
    id_bytes: int
    kind: str = ""
    status: str = "ok"
    error: str = ""


def to_frame(rows: list[LedgerRow] | list[dict]) -> pd.DataFrame:
    """Rows as a tidy DataFrame with the contract's columns and integer byte columns."""
    records = [asdict(r) if isinstance(r, LedgerRow) else r for r in rows]
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    int_columns = ["round", "partition_id", "node_id", *summed()]
    frame[int_columns] = frame[int_columns].astype("int64") if len(frame) else frame[int_columns]
    frame["node_id"] = frame["node_id"].astype("uint64") if len(frame) else frame["node_id"]
    return frame


def totals(frame: pd.DataFrame, recorded_by: str = "server") -> dict[str, dict[str, int]]:
    """Byte totals per direction (``down``, ``up``, ``total``) for each summed column.

    Failed rows count: their bytes were spent.
    """
    side = frame[frame["recorded_by"] == recorded_by]
    out: dict[str, dict[str, int]] = {}
    for direction in ("down", "up"):
        part = side[side["direction"] == direction]
        out[direction] = {m: int(part[m].sum()) for m in summed()}
    out["total"] = {m: out["down"][m] + out["up"][m] for m in summed()}
    return out
