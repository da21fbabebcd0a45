"""The SuperLink's traffic counters against the ledger: what matches, what differs, and why.

``down`` is the SuperLink's outbound counter (to SuperNodes), ``up`` its inbound counter.
Flower 1.42 counts, per run (``flwr/superlink/servicer/fleet/fleet_handlers.py``):
``PullMessages`` request and response ``ByteSize()`` (only calls that returned a
message), ``PushMessages`` request and response ``ByteSize()``, ``PushObject``
``len(object_content)`` when the object was stored, ``PullObject`` ``len(content)``.
The ledger's ``wire_bytes`` (:mod:`fedcomp.flower.measure`) counts a model message's
unique objects plus its envelope in its direction of travel (the PullMessages response
entry down, the PushMessages request up). :func:`reconcile` itemizes, from the
SuperLink's request log (:mod:`fedcomp.engines.deployment.superlink`), what the
SuperLink counts and the ledger leaves out by definition, and compares the rest (the
model traffic) with the ledger. Nothing here assumes how many arrays or objects a
message holds: every object id of a message's tree is matched by id.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fedcomp.engines.deployment.errors import DeploymentError
from fedcomp.flower.protocol import LEDGER

#: Message types whose replies carry a ledger row (model messages).
MODEL_MESSAGE_TYPES = ("train", "evaluate")

#: Non-message traffic the SuperLink counts and the ledger leaves out, by definition.
NON_MESSAGE = ("query", "acks", "pull_requests", "bookkeeping", "other")


def _recorddict_without_ledger(content: bytes) -> tuple[int, str | None]:
    """(bytes the ``fedcomp.ledger`` ref adds to a RecordDict object, the ledger record's id).

    Rebuilds the object the way ``RecordDict.deflate`` writes it (JSON refs body, header
    ``RecordDict <child ids> <body length>``) with and without the ledger ref; the rebuilt
    full object must equal the logged one byte for byte, or this raises.
    """
    from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER

    refs = json.loads(content.partition(HEAD_BODY_DIVIDER)[2])

    def deflate(refs: dict[str, str]) -> bytes:
        body = json.dumps(refs).encode("utf-8")
        head = HEAD_VALUE_DIVIDER.join(["RecordDict", ",".join(dict.fromkeys(refs.values())), str(len(body))])
        return head.encode("utf-8") + HEAD_BODY_DIVIDER + body

    if deflate(refs) != content:
        raise DeploymentError("a logged RecordDict object does not rebuild from its refs (Flower's format changed?)")
    if LEDGER not in refs:
        return 0, None
    kept = {k: v for k, v in refs.items() if k != LEDGER}
    return len(content) - len(deflate(kept)), refs[LEDGER]


def _ledger_subtree_bytes(request_b64: str, ledger_id: str | None) -> int:
    """Bytes the ledger record's subtree adds to a logged PushMessagesRequest.

    ``ByteSize()`` of the request minus that of a copy without the subtree (the ledger
    ConfigRecord under the RecordDict).
    """
    from flwr.proto.fleet_pb2 import PushMessagesRequest  # pylint: disable=no-name-in-module

    if ledger_id is None:
        return 0
    request = PushMessagesRequest.FromString(base64.b64decode(request_b64))
    stripped = PushMessagesRequest()
    stripped.CopyFrom(request)
    for content in stripped.message_object_trees[0].children:  # Message -> RecordDict
        for child in list(content.children):
            if child.object_id == ledger_id:
                content.children.remove(child)
    return request.ByteSize() - stripped.ByteSize()


@dataclass
class _Moved:
    """One message as the SuperLink moved it (Flower 1.42 moves one message per request)."""

    direction: str  # down: pulled by a SuperNode | up: pushed by one
    node: str
    type: str
    envelope: int  # PullMessagesResponse (down) / PushMessagesRequest (up) bytes
    objects: list[str]  # unique object ids of its tree
    request: str = ""  # the logged PushMessagesRequest (up)
    sent: dict[str, int] = field(default_factory=dict)  # objects moved for it -> bytes
    bookkeeping: int = 0
    dedup_bytes: int = 0
    dedup_objects: int = 0
    dedup_unknown: int = 0

    @property
    def model_traffic(self) -> int:
        """What the ledger's ``wire_bytes`` stands for, as the SuperLink counted it."""
        return self.envelope + sum(self.sent.values()) - self.bookkeeping + self.dedup_bytes


def reconcile(traffic: list[dict[str, Any]], ledger: Any, counters: dict[str, int]) -> dict[str, Any]:
    """Split the SuperLink's counters into model-message traffic and itemized non-message traffic.

    Every figure comes from the SuperLink's request log (:func:`read_traffic`), request by
    request as Flower counted it. Per direction (``down`` = the SuperLink's outbound
    counter, ``up`` = inbound):

    - ``non_message``: ``query`` (the one-off query messages: their envelopes and
      objects), ``acks`` (PushMessages responses, sent down for every reply push),
      ``pull_requests`` (PullMessages requests, sent up), ``bookkeeping`` (the
      ``fedcomp.ledger`` ConfigRecord objects, the bytes its ref adds to the reply's
      RecordDict object and to the PushMessages request's object tree), ``other`` (any
      other counted request or object);
    - ``dedup_bytes``: objects of a model message the SuperLink or SuperNode did not
      move because it already held them (their size taken from another transfer of the
      same object id in the run);
    - ``model_traffic`` = counter − non-message + dedup, compared with the ledger's
      ``wire_bytes`` (server rows);
    - ``unexplained_bytes`` = model traffic − ledger, 0 when every byte is accounted for.

    ``per_message``: one row per model message, the SuperLink's bytes beside its ledger row.
    """
    logged = {"down": 0, "up": 0}
    items = {d: dict.fromkeys(NON_MESSAGE, 0) for d in logged}
    moved: list[_Moved] = []
    sizes: dict[str, int] = {}  # object id -> bytes, from any transfer in the run
    recorddicts: dict[str, bytes] = {}
    latest: dict[tuple[str, str], list[_Moved]] = defaultdict(list)
    for rec in traffic:
        sent, recv, kind, node = int(rec["sent"]), int(rec["recv"]), rec["kind"], rec.get("node", "")
        logged["down"] += sent
        logged["up"] += recv
        if kind in ("pull_messages", "push_messages") and rec.get("messages"):
            m = rec["messages"][0]
            down = kind == "pull_messages"
            msg = _Moved(
                "down" if down else "up", node, m["type"], sent if down else recv,
                list(dict.fromkeys(m["objects"])), rec.get("request", ""),
            )  # fmt: skip
            moved.append(msg)
            latest[(msg.direction, node)].append(msg)
            # the other half of the call: the PullMessages request / the PushMessages ack
            items["up" if down else "down"]["pull_requests" if down else "acks"] += recv if down else sent
        elif kind in ("pull_object", "push_object"):
            direction, oid = ("down" if kind == "pull_object" else "up"), rec["object_id"]
            size = sent if direction == "down" else recv
            sizes.setdefault(oid, size)
            if "content" in rec:
                recorddicts[oid] = base64.b64decode(rec["content"])
            owner = next((m for m in reversed(latest[(direction, node)]) if oid in m.objects), None)
            if owner is None:
                items[direction]["other"] += size
            else:
                owner.sent[oid] = owner.sent.get(oid, 0) + size
        else:
            items["down"]["other"] += sent
            items["up"]["other"] += recv

    for msg in moved:
        if msg.type not in MODEL_MESSAGE_TYPES:
            key = "query" if msg.type == "query" else "other"
            items[msg.direction][key] += msg.envelope + sum(msg.sent.values())
            continue
        ledger_id, ref_bytes = None, 0
        for oid in msg.objects:
            if oid in recorddicts:
                ref_bytes, ledger_id = _recorddict_without_ledger(recorddicts[oid])
                if oid not in msg.sent:
                    ref_bytes = 0  # not moved: nothing counted to take off
                break
        if msg.request:
            msg.bookkeeping += _ledger_subtree_bytes(msg.request, ledger_id)
        msg.bookkeeping += ref_bytes + msg.sent.get(ledger_id, 0)
        for oid in msg.objects:
            if oid in msg.sent or oid == ledger_id:
                continue
            msg.dedup_objects += 1
            if oid in sizes:
                ref = _recorddict_without_ledger(recorddicts[oid])[0] if oid in recorddicts else 0
                msg.dedup_bytes += sizes[oid] - ref
            else:
                msg.dedup_unknown += 1
        items[msg.direction]["bookkeeping"] += msg.bookkeeping

    out = raw_agreement(counters, ledger)
    out["log_matches_counters"] = logged == {"down": counters["outbound"], "up": counters["inbound"]}
    for direction in ("down", "up"):
        mine = [m for m in moved if m.direction == direction]
        models = [m for m in mine if m.type in MODEL_MESSAGE_TYPES]
        wire = out[direction]["ledger_wire"]
        dedup = sum(m.dedup_bytes for m in models)
        counted = out[direction]["superlink"] - sum(items[direction].values())
        model = counted + dedup
        out[direction] |= {
            "superlink_logged": logged[direction],
            "non_message": items[direction],
            "dedup_bytes": dedup,
            "dedup_objects": sum(m.dedup_objects for m in models),
            "dedup_objects_size_unknown": sum(m.dedup_unknown for m in models),
            "model_traffic": model,
            "model_diff_bytes": wire - model,
            "model_diff_pct": _pct(wire - model, model),
            "unexplained_bytes": model - wire,
            "model_counted": counted,
            "ledger_link": out[direction]["ledger_link"],
            "link_diff_bytes": out[direction]["ledger_link"] - counted,
            "messages": {t: sum(1 for m in mine if m.type == t) for t in sorted({m.type for m in mine})},
        }
    out["per_message"] = _message_rows(moved, ledger[ledger["recorded_by"] == "server"])
    return out


def _message_rows(moved: list[_Moved], server: Any) -> list[dict[str, Any]]:
    """Model messages in SuperLink order, each beside its ledger row (matched per node and phase)."""
    queues: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in server.sort_values("round", kind="stable").to_dict("records"):
        queues[(row["direction"], str(row["node_id"]), row["phase"])].append(row)
    rows = []
    for m in moved:
        if m.type not in MODEL_MESSAGE_TYPES:
            continue
        queue = queues[(m.direction, m.node, m.type)]
        match = queue.pop(0) if queue else {}
        rows.append(
            {
                "direction": m.direction,
                "node_id": m.node,
                "phase": m.type,
                "round": match.get("round"),
                "partition_id": match.get("partition_id"),
                "ledger_wire": match.get("wire_bytes"),
                "superlink_envelope": m.envelope,
                "superlink_objects": sum(m.sent.values()),
                "bookkeeping": m.bookkeeping,
                "dedup_bytes": m.dedup_bytes,
                "model_traffic": m.model_traffic,
                "objects": len(m.objects),
                "dedup_objects": m.dedup_objects,
            }
        )
    return rows


def _pct(diff: float, base: float) -> float | None:
    return round(100.0 * diff / base, 3) if base else None


def raw_agreement(counters: dict[str, int], ledger: Any) -> dict[str, Any]:
    """Ledger wire bytes (server rows) vs the SuperLink's counters, per direction."""
    server = ledger[ledger["recorded_by"] == "server"]
    out = {}
    for direction, key in (("down", "outbound"), ("up", "inbound")):
        mine = server[server["direction"] == direction]
        wire, link = int(mine["wire_bytes"].sum()), int(counters[key])
        out[direction] = {
            "superlink": link,
            "ledger_wire": wire,
            "ledger_link": int(mine["link_bytes"].sum()) if "link_bytes" in mine else wire,
            "raw_diff_bytes": wire - link,
            "raw_diff_pct": _pct(wire - link, link),
        }
    return out


def format_report(record: dict[str, Any]) -> str:
    """The lines the recipe prints about the traffic agreement."""
    security = ""
    if "tls" in record:
        security = "; " + ("TLS" if record["tls"] else "plain HTTP (engine.tls=false)")
        security += ", " + ("registered SuperNodes only" if record.get("supernode_auth") else "no SuperNode auth")
    lines = [f"deployment: {record['status']} (flwr run id {record.get('flwr_run_id')}{security})"]
    if record.get("reason"):
        lines.append(f"  reason: {record['reason']}")
    agree = record.get("agreement")
    if agree:
        lines.append("  SuperLink counters (flwr ls) vs ledger wire_bytes (server rows); diff = ledger - SuperLink:")
        for direction, label in (("down", "outbound"), ("up", "inbound")):
            a = agree[direction]
            lines.append(
                f"    {direction:<4} raw   {label:<8} {a['superlink']:>12,} B vs ledger {a['ledger_wire']:>12,} B:"
                f" {a['raw_diff_bytes']:>+9,} B ({_fmt_pct(a['raw_diff_pct'])})"
            )
            if "model_traffic" not in a:
                continue
            n = a["non_message"]
            lines.append(
                f"         non-message: query {n['query']:,}, acks {n['acks']:,}, PullMessages requests "
                f"{n['pull_requests']:,}, fedcomp.ledger {n['bookkeeping']:,}, other {n['other']:,};"
                f" not re-sent +{a['dedup_bytes']:,} ({a['dedup_objects']} objects)"
            )
            lines.append(
                f"         model traffic  {a['model_traffic']:>12,} B vs ledger {a['ledger_wire']:>12,} B:"
                f" {a['model_diff_bytes']:>+9,} B ({_fmt_pct(a['model_diff_pct'])})"
            )
            lines.append(f"         counted        {a['model_counted']:>12,} B {_counted_as(a)}")
        if "log_matches_counters" in agree:
            lines.append(f"    request log sums to the counters exactly: {agree['log_matches_counters']}")
    if record.get("leftover_pids"):
        lines.append(f"  WARNING: processes still alive after stopping: {record['leftover_pids']}")
    return "\n".join(lines)


def _counted_as(a: dict[str, Any]) -> str:
    """Which prediction the SuperLink's count of model traffic matched (link or wire bytes)."""
    if a["model_counted"] == a["ledger_link"]:
        return "= ledger link_bytes (objects the SuperLink held were not pushed again)"
    if a["model_counted"] == a["ledger_wire"]:
        return "= ledger wire_bytes (identical replies pushed at once: each copy counted)"
    return f"vs ledger link_bytes {a['ledger_link']:,} B: {a['link_diff_bytes']:+,} B"


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"
