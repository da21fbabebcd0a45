"""The traffic-logging SuperLink: Flower's own ``flower-superlink``, with an observer.

The SuperLink's per-run traffic counters (``network-traffic`` of ``flwr ls``) are
Flower's; this entry point leaves them unchanged and logs every request that adds to
them, one JSON line each, so :mod:`fedcomp.engines.deployment.reconcile` can itemize
them request by request. TLS and SuperNode authentication do not change what is
counted: the counters are protobuf ``ByteSize()`` values and object lengths, measured
before TLS and without the authentication headers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: The environment variable naming the request log's path.
TRAFFIC_VAR = "FEDCOMP_TRAFFIC_LOG"
#: The request log's file name in the run's ``deployment/`` folder.
TRAFFIC_FILE = "traffic.jsonl"


def command(flower_args: list[str]) -> list[str]:
    """argv that starts the traffic-logging SuperLink with ``flower_args``."""
    code = "from fedcomp.engines.deployment.superlink import superlink_main; superlink_main()"
    return [sys.executable, "-c", code, *flower_args]


def superlink_main() -> None:
    """``flower-superlink`` with an observer that logs every request Flower counts.

    Started by :func:`command` (``python -c "...superlink_main()" <flower-superlink
    args>``). It wraps ``LinkState.store_traffic`` (the one place Flower adds to a run's
    counters; the counting itself is unchanged) and the four Fleet API handlers that
    call it, and appends one JSON line per counted request to
    ``$FEDCOMP_TRAFFIC_LOG``: kind, node, bytes ``sent``/``recv`` as Flower counted them,
    the message (type, object ids of its tree) of a PullMessages/PushMessages call, the
    ``objects_to_push`` and the serialized request of a PushMessages call, and the object
    id, type and size of a PushObject/PullObject call (with the content of a RecordDict).
    """
    import base64

    from flwr.server.superlink.linkstate import in_memory_linkstate
    from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER
    from flwr.supercore.inflatable.inflatable_object import iterate_object_tree
    from flwr.superlink.cli import flower_superlink
    from flwr.superlink.servicer.fleet import fleet_handlers

    sink = open(os.environ[TRAFFIC_VAR], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process
    lock, local = threading.Lock(), threading.local()

    def emit(record: dict[str, Any]) -> None:
        with lock:
            sink.write(json.dumps(record) + "\n")

    classes = [in_memory_linkstate.InMemoryLinkState]
    with contextlib.suppress(ImportError):
        from flwr.server.superlink.linkstate import sql_linkstate

        classes.append(sql_linkstate.SqlLinkState)
    for cls in classes:

        def store_traffic(self: Any, run_id: int, *, bytes_sent: int, bytes_recv: int, _orig: Any = cls.store_traffic):
            _orig(self, run_id, bytes_sent=bytes_sent, bytes_recv=bytes_recv)
            if getattr(local, "calls", None) is not None:
                local.calls.append((int(run_id), int(bytes_sent), int(bytes_recv)))
            else:
                emit({"kind": "other", "run_id": str(run_id), "sent": bytes_sent, "recv": bytes_recv})

        cls.store_traffic = store_traffic

    def messages(protos: Any, trees: Any) -> list[dict[str, Any]]:
        return [
            {"type": p.metadata.message_type, "objects": [t.object_id for t in iterate_object_tree(tree)]}
            for p, tree in zip(protos, trees, strict=True)
        ]

    def obj(object_id: str, content: bytes) -> dict[str, Any]:
        kind = content.partition(HEAD_BODY_DIVIDER)[0].split(HEAD_VALUE_DIVIDER.encode())[0].decode()
        info: dict[str, Any] = {"object_id": object_id, "type": kind, "size": len(content)}
        if kind == "RecordDict":
            info["content"] = base64.b64encode(content).decode()
        return info

    describe = {
        "pull_messages": lambda req, res: {"messages": messages(res.messages_list, res.message_object_trees)},
        "push_messages": lambda req, res: {
            "messages": messages(req.messages_list, req.message_object_trees),
            "objects_to_push": list(res.objects_to_push),
            "request": base64.b64encode(req.SerializeToString()).decode(),
        },
        "push_object": lambda req, res: obj(req.object_id, req.object_content),
        "pull_object": lambda req, res: obj(req.object_id, res.object_content),
    }

    def wrap(name: str) -> None:
        original = getattr(fleet_handlers, name)

        def handler(*args: Any, **kwargs: Any) -> Any:
            local.calls, response = [], None
            try:
                response = original(*args, **kwargs)
                return response
            finally:
                calls, local.calls = local.calls, None
                if calls:
                    request = kwargs.get("request", args[0] if args else None)
                    record = {
                        "kind": name,
                        "time": time.time(),
                        "run_id": str(calls[0][0]),
                        "node": str(request.node.node_id) if request is not None else "",
                        "sent": sum(c[1] for c in calls),
                        "recv": sum(c[2] for c in calls),
                    }
                    with contextlib.suppress(Exception):
                        if response is not None:
                            record.update(describe[name](request, response))
                    emit(record)

        setattr(fleet_handlers, name, handler)

    for name in describe:
        wrap(name)
    flower_superlink()


def read_traffic(path: Path, run_id: int | str) -> list[dict[str, Any]]:
    """The observer's records of one run, in the order the SuperLink counted them."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if rec.get("run_id") == str(run_id):
                records.append(rec)
    return sorted(records, key=lambda r: r.get("time", 0.0))
