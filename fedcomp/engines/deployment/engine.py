"""Flower's Deployment Engine on one machine: a real SuperLink, N SuperNodes, ``flwr run``.

``python -m fedcomp.deploy [hydra overrides]`` (or ``python -m fedcomp.run
engine=deployment ...``, which calls :func:`deploy`) runs one fedcomp experiment the way a
real federation runs it, on loopback:

1. a temporary ``FLWR_HOME`` whose ``config.toml`` names one SuperLink connection;
2. ``flower-superlink --insecure --host 127.0.0.1 --port P`` (P free, chosen at run time);
3. ``flower-supernode --insecure --superlink 127.0.0.1:P --port Q_i
   --node-config "partition-id=i num-partitions=N"`` for i in 0..N-1;
4. ``flwr run <project> <connection> --run-config <file>.toml --format json``: the whole
   fedcomp config travels as the run-config key ``fedcomp-config`` (a JSON string inside
   a TOML file, so no shell or TOML quoting is involved);
5. ``flwr ls <connection> --run-id R --format json`` every ``poll_interval`` seconds until
   the run is finished (the ServerApp writes ``config.yaml``, ``ledger.parquet``,
   ``metrics.parquet`` and ``summary.json`` into ``output_dir`` itself);
6. the SuperLink's traffic counters for the run (``network-traffic`` of ``flwr ls``) are
   compared with the ledger's ``wire_bytes`` (server rows) per direction and written to
   ``<output_dir>/deployment.json``;
7. every process started (and every process they started) is stopped, by PID, also on
   failure and on SIGINT/SIGTERM/SIGHUP.

Measurement
-----------
``down`` is the SuperLink's outbound counter (to SuperNodes), ``up`` its inbound counter.
Flower 1.42 counts, per run (``flwr/superlink/servicer/fleet/fleet_handlers.py``):
``PullMessages`` request and response ``ByteSize()`` (only calls that returned a
message), ``PushMessages`` request and response ``ByteSize()``, ``PushObject``
``len(object_content)`` when the object was stored, ``PullObject`` ``len(content)``.
The ledger's ``wire_bytes`` (:mod:`fedcomp.flower.measure`) counts a model message's unique
objects plus its envelope in its direction of travel (the PullMessages response entry
down, the PushMessages request up). With ``engine.traffic_log`` (default) the SuperLink
runs with an observer that logs every counted request (:func:`superlink_main`; the
counters themselves are Flower's, unchanged) and :func:`reconcile` itemizes, from that
log, what the SuperLink counts and the ledger leaves out by definition, and compares the
rest (the model traffic) with the ledger.

Failure handling
----------------
A SuperLink that does not answer, a port in use, a process that exits before the run
is over, a run that fails or times out: every process is stopped, ``deployment.json`` is
written with ``status: "incomplete"`` and the reason (process logs stay in
``<output_dir>/deployment/``), and :class:`DeploymentError` is raised. ``summary.json``
only exists when the ServerApp finished all rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from fedcomp.core.env import child_environment
from fedcomp.core.errors import ConfigError
from fedcomp.core.files import write_json
from fedcomp.core.paths import PROJECT_DIR
from fedcomp.core.rundir import is_complete
from fedcomp.flower.protocol import LEDGER, RUN_CONFIG_KEY

DEPLOYMENT_FILE = "deployment.json"
LOG_DIR = "deployment"
TRAFFIC_FILE = "traffic.jsonl"
CONNECTION = "fedcomp"
TAG_VAR = "FEDCOMP_DEPLOY_TAG"
TRAFFIC_VAR = "FEDCOMP_TRAFFIC_LOG"
MODEL_MESSAGE_TYPES = ("train", "evaluate")

class DeploymentError(RuntimeError):
    """The deployment could not run to the end; the message says why."""


class Interrupted(DeploymentError):
    """A signal asked the deployment to stop."""


# ---------------------------------------------------------------------------- ports


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (someone listens or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that are free right now (the OS picks them)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_address(address: str) -> tuple[str, int]:
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise DeploymentError(f"engine.superlink_address: must be 'host:port', got {address!r}")
    return host, int(port)


# ---------------------------------------------------------------------------- processes


def _state(pid: int | str) -> bytes | None:
    """The state letter of a process (``b"Z"`` for a zombie), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, b"Z")


def _proc_tagged(tag: str) -> list[int]:
    """PIDs of live processes whose environment carries ``FEDCOMP_DEPLOY_TAG=tag``.

    Every process fedcomp starts gets the tag, and Flower passes the environment on to
    the processes it starts (SuperExec, ServerApp, ClientApp), so this finds them even
    after they left their parent's process group or were re-parented.
    """
    needle = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in env and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _parent_death_signal() -> Any:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when we die (Linux), or None.

    libc is loaded here, before any fork; the child only makes one C call (no imports,
    no locks), which is what makes a ``preexec_fn`` safe enough with threads around.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Started:
    """One process fedcomp started."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen
    critical: bool = True  # its exit before the run ends is a failure

    @property
    def pid(self) -> int:
        return self.popen.pid

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "argv": self.argv,
            "exit_code": self.popen.poll(),
            "log": str(self.log_path),
        }


class Processes:
    """Start processes in their own process groups, tagged; stop them all by PID."""

    def __init__(self, env: dict[str, str], log_dir: Path, stop_timeout: float = 10.0) -> None:
        self.tag = uuid.uuid4().hex
        self.env = {**env, TAG_VAR: self.tag}
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self.started: list[Started] = []
        self.seen: set[int] = set()
        self._preexec = _parent_death_signal()

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, critical: bool = True
    ) -> Started:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(env or {})},
                cwd=cwd,
                start_new_session=True,  # own process group: pgid == pid
                preexec_fn=self._preexec,  # noqa: PLW1509 - one prctl call, see _parent_death_signal
            )
        proc = Started(name, argv, log_path, popen, critical)
        self.started.append(proc)
        self.seen.add(proc.pid)
        return proc

    def remember_descendants(self) -> None:
        """Note the PIDs of everything started so far (called while polling)."""
        self.seen.update(_proc_tagged(self.tag))

    def _ours(self) -> set[int]:
        """PIDs that are ours now: running direct children and live tagged processes.

        Only these are ever signalled, so a PID seen earlier and since reused by someone
        else's process is never touched.
        """
        return {p.pid for p in self.started if p.popen.poll() is None} | set(_proc_tagged(self.tag))

    def stop_all(self) -> list[int]:
        """SIGTERM our process groups and tagged processes, then SIGKILL; return survivors."""
        self.remember_descendants()
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            for proc in self.started:
                if proc.popen.poll() is None:  # not reaped: its pid (= pgid) is still ours
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            for pid in _proc_tagged(self.tag):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self._ours() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self._ours():
                break
        return sorted(self._ours())


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _signals(handler: Any) -> Iterator[None]:
    """Install ``handler`` for SIGINT/SIGTERM/SIGHUP meanwhile (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def stop_on_signals() -> contextlib.AbstractContextManager[None]:
    """Turn SIGTERM/SIGHUP/SIGINT into :class:`Interrupted` while deploying."""
    return _signals(_raise_interrupted)


def ignore_signals() -> contextlib.AbstractContextManager[None]:
    """Let the clean-up finish: ignore SIGINT/SIGTERM/SIGHUP meanwhile."""
    return _signals(signal.SIG_IGN)


# ---------------------------------------------------------------------------- Flower CLI


def _bin(name: str) -> str:
    """An executable of this Python environment (Flower's console scripts)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise DeploymentError(f"'{name}' not found next to {sys.executable} or on PATH (install flwr)")
    return found


def project_dir() -> Path:
    """The directory holding fedcomp's pyproject.toml with the Flower App declaration."""
    root = PROJECT_DIR
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text(encoding="utf-8"):
        raise DeploymentError(
            f"{pyproject} does not declare the Flower App ([tool.flwr.app]); "
            "the deployment engine needs fedcomp installed from its source tree (pip install -e .)"
        )
    return root


def _first_json(text: str) -> dict[str, Any]:
    """The JSON object a ``flwr ... --format json`` command printed (log lines may come first)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        with contextlib.suppress(json.JSONDecodeError):
            obj, _ = decoder.raw_decode(text, start)
            if isinstance(obj, dict):
                return obj
        start = text.find("{", start + 1)
    raise ValueError(f"no JSON in output: {text[-500:]!r}")


class FlwrCli:
    """The ``flwr`` CLI against one SuperLink connection in a private FLWR_HOME."""

    def __init__(self, home: Path, address: str, env: dict[str, str]) -> None:
        self.home, self.address, self.env = home, address, env
        self.exe = _bin("flwr")
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{address}"\ninsecure = true\n',
            encoding="utf-8",
        )

    def call(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``flwr <args> --format json``; the parsed JSON (DeploymentError on failure)."""
        try:
            done = subprocess.run(
                [self.exe, *args, "--format", "json"],
                env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as err:
            raise DeploymentError(f"`flwr {' '.join(args)}` did not answer within {timeout:g} s") from err
        try:
            data = _first_json(done.stdout)
        except ValueError:
            data = {}
        if done.returncode != 0 or not data.get("success", False):
            detail = data.get("error-message") or (done.stderr or done.stdout).strip()[-800:]
            raise DeploymentError(f"`flwr {' '.join(args)}` failed (exit {done.returncode}): {detail}")
        return data

    def run_status(self, run_id: int) -> dict[str, Any]:
        return self.call("ls", CONNECTION, "--run-id", str(run_id))["runs"][0]

    def online_nodes(self) -> int:
        nodes = self.call("supernode", "ls", CONNECTION).get("nodes", [])
        return sum(1 for n in nodes if n.get("status") == "online")


# ---------------------------------------------------------------------------- SuperLink request log


def superlink_main() -> None:
    """``flower-superlink`` with an observer that logs every request Flower counts.

    Started as ``python -c "from fedcomp.engines.deployment.engine import superlink_main; superlink_main()"
    <flower-superlink args>``. It wraps ``LinkState.store_traffic`` (the one place Flower
    adds to a run's counters; the counting itself is unchanged) and the four Fleet API
    handlers that call it, and appends one JSON line per counted request to
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
            for p, tree in zip(protos, trees)
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


# ---------------------------------------------------------------------------- reconciliation

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
    import base64

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
    import base64

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
        model = out[direction]["superlink"] - sum(items[direction].values()) + dedup
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
        wire, link = int(server[server["direction"] == direction]["wire_bytes"].sum()), int(counters[key])
        out[direction] = {
            "superlink": link,
            "ledger_wire": wire,
            "raw_diff_bytes": wire - link,
            "raw_diff_pct": _pct(wire - link, link),
        }
    return out


def format_report(record: dict[str, Any]) -> str:
    """The lines the recipe prints about the traffic agreement."""
    lines = [f"deployment: {record['status']} (flwr run id {record.get('flwr_run_id')})"]
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
        if "log_matches_counters" in agree:
            lines.append(f"    request log sums to the counters exactly: {agree['log_matches_counters']}")
    if record.get("leftover_pids"):
        lines.append(f"  WARNING: processes still alive after stopping: {record['leftover_pids']}")
    return "\n".join(lines)


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


# ---------------------------------------------------------------------------- deploy


def _engine_value(engine: dict[str, Any], key: str, default: Any) -> Any:
    value = engine.get(key)
    return default if value is None else value


def _check_config(cfg: dict[str, Any]) -> None:
    engine = cfg["engine"]
    num_clients = int(cfg["federation"]["num_clients"])
    nodes = engine.get("num_supernodes", num_clients)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes != num_clients:
        raise ConfigError(
            f"engine.num_supernodes: must equal federation.num_clients={num_clients} "
            f"(one SuperNode per partition), got {nodes!r}"
        )
    ports = engine.get("supernode_ports")
    if ports is not None and (not isinstance(ports, list) or len(ports) != num_clients):
        raise ConfigError(f"engine.supernode_ports: must be null or a list of {num_clients} ports, got {ports!r}")
    for key in ("startup_timeout", "run_timeout", "poll_interval", "connect_timeout", "stop_timeout"):
        value = engine.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"engine.{key}: must be a number > 0, got {value!r}")


def _reason(err: BaseException) -> str:
    if isinstance(err, DeploymentError):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return f"{type(err).__name__}: {err}"


def deploy(cfg: dict[str, Any], echo: Any = print) -> dict[str, Any]:
    """Run ``cfg`` on a local SuperLink and SuperNodes with ``flwr run``; see the module docstring.

    Starts the federation, runs the experiment, stops every process, writes
    ``<output_dir>/deployment.json`` and returns its record. Raises
    :class:`DeploymentError` when the run did not finish (the record says why).
    """
    _check_config(cfg)
    output_dir = Path(cfg["output_dir"]).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / DEPLOYMENT_FILE).unlink(missing_ok=True)
    fed = LocalFederation(cfg["engine"], int(cfg["federation"]["num_clients"]), output_dir / LOG_DIR, echo)
    record: dict[str, Any] = {"status": "incomplete", "reason": "", "flwr_run_id": None, "output_dir": str(output_dir)}
    error: BaseException | None = None
    try:
        with stop_on_signals():
            fed.start()
            record = fed.run(cfg, write=False)
    except BaseException as err:  # noqa: BLE001 - recorded, processes stopped, re-raised below
        error = err
        record = fed.last_record or record
        record["status"] = "incomplete"
        record["reason"] = record.get("reason") or _reason(err)
    finally:
        record["leftover_pids"] = fed.close()
        record.update(fed.describe())
        _finish_record(record, output_dir)
        echo(format_report(record))
    if isinstance(error, DeploymentError):
        raise error
    if error is not None or record["status"] != "complete":
        raise DeploymentError(record["reason"]) from error
    return record


def _finish_record(record: dict[str, Any], output_dir: Path) -> None:
    """Check the run directory and write ``deployment.json``."""
    record["results_complete"] = is_complete(output_dir)
    if record["status"] == "complete" and not record["results_complete"]:
        record["status"] = "incomplete"
        record["reason"] = "the run finished but the ServerApp did not write all four result files"
    write_json(output_dir / DEPLOYMENT_FILE, record)


def _child_env(home: Path) -> dict[str, str]:
    env = child_environment(FLWR_HOME=str(home))
    # Flower starts flower-superexec by name
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop(TRAFFIC_VAR, None)
    return env


class LocalFederation:
    """A SuperLink and N SuperNodes started on this machine, for one or more ``flwr run``s.

    Parameters
    ----------
    engine
        ``cfg["engine"]`` (``conf/engine/deployment.yaml``).
    num_nodes
        SuperNodes to start, partition ids ``0..num_nodes-1``.
    log_dir
        Where the process logs and the SuperLink's request log go.

    Use as a context manager (``with LocalFederation(...) as fed: fed.run(cfg)``) or call
    :meth:`start` and :meth:`close` (which stops every process, also those the Flower
    processes started) yourself.
    """

    def __init__(self, engine: dict[str, Any], num_nodes: int, log_dir: Path, echo: Any = print) -> None:
        self.engine = engine
        self.num_nodes = num_nodes
        self.log_dir = Path(log_dir)
        self.echo = echo
        self.host = str(_engine_value(engine, "host", "127.0.0.1"))
        self.home = Path(tempfile.mkdtemp(prefix="fedcomp-flwr-home-"))
        self.procs = Processes(_child_env(self.home), self.log_dir, float(_engine_value(engine, "stop_timeout", 10)))
        self.flwr: FlwrCli | None = None
        self.traffic_path: Path | None = None
        self.superlink: dict[str, Any] = {}
        self.last_record: dict[str, Any] | None = None
        self.closed = False
        self._leftovers: list[int] = []

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- start / stop
    def start(self) -> None:
        """Start (or reach) the SuperLink, start the SuperNodes, wait until all are online."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        engine = self.engine
        timeout = float(_engine_value(engine, "startup_timeout", 120))
        external = engine.get("superlink_address")
        # pick every free port at once, so that none is handed out twice
        configured = {int(p) for p in [engine.get("superlink_port"), *(engine.get("supernode_ports") or [])] if p}
        spare = [p for p in free_ports(self.host, 2 * (self.num_nodes + 1)) if p not in configured]
        link_proc = None
        if external:
            link_host, link_port = split_address(external)
            self.superlink = {"address": f"{link_host}:{link_port}", "started_by_fedcomp": False}
        else:
            link_host, link_port = self.host, int(engine.get("superlink_port") or spare.pop())
            if engine.get("superlink_port") and port_in_use(self.host, link_port):
                raise DeploymentError(
                    f"engine.superlink_port={link_port}: port {self.host}:{link_port} is already in use"
                )
            link_args = ["--insecure", "--host", self.host, "--port", str(link_port)]
            argv, extra_env = [_bin("flower-superlink"), *link_args], {}
            if _engine_value(engine, "traffic_log", True):
                self.traffic_path = self.log_dir / TRAFFIC_FILE
                self.traffic_path.unlink(missing_ok=True)
                extra_env[TRAFFIC_VAR] = str(self.traffic_path)
                argv = [sys.executable, "-c", "from fedcomp.engines.deployment.engine import superlink_main; superlink_main()", *link_args]
            link_proc = self.procs.start("superlink", argv, env=extra_env, cwd=self.home)
            self.superlink = {"address": f"{link_host}:{link_port}", "started_by_fedcomp": True, "pid": link_proc.pid}
            self.echo(f"deployment: SuperLink on {link_host}:{link_port} (pid {link_proc.pid}), logs in {self.log_dir}")
        address = self.superlink["address"]
        self.flwr = FlwrCli(self.home, address, self.procs.env)
        if external or not _engine_value(engine, "start_supernodes", True):
            self._wait_superlink(link_host, link_port, link_proc, timeout)
            if not _engine_value(engine, "start_supernodes", True):
                return
        node_ports = engine.get("supernode_ports") or spare[: self.num_nodes]
        for port in node_ports:
            if port_in_use(self.host, int(port)):
                raise DeploymentError(f"engine.supernode_ports: port {self.host}:{port} is already in use")
        for i, port in enumerate(node_ports):
            argv = [
                _bin("flower-supernode"), "--insecure", "--superlink", address, "--host", self.host,
                "--port", str(port), "--node-config", f"partition-id={i} num-partitions={self.num_nodes}",
            ]  # fmt: skip
            node = self.procs.start(f"supernode-{i}", argv, cwd=self.home)
            self.echo(f"deployment: SuperNode partition-id={i} (pid {node.pid}, runtime port {port})")
        if not external:  # the SuperNodes start (and retry connecting) while the SuperLink comes up
            self._wait_superlink(link_host, link_port, link_proc, timeout)
        self._wait_nodes(timeout)

    def close(self) -> list[int]:
        """Stop every process started (SIGTERM, then SIGKILL); the PIDs still alive after."""
        if not self.closed:
            with ignore_signals():
                self._leftovers = self.procs.stop_all()
                shutil.rmtree(self.home, ignore_errors=True)
            self.closed = True
        return self._leftovers

    def describe(self) -> dict[str, Any]:
        return {
            "superlink": self.superlink,
            "processes": [p.describe() for p in self.procs.started],
            "stopped_pids": sorted(self.procs.seen),
            "process_tag": self.procs.tag,
        }

    def _wait_superlink(self, host: str, port: int, proc: Started | None, timeout: float) -> None:
        """Until the SuperLink answers ``flwr ls``; DeploymentError when it exits or times out."""
        assert self.flwr is not None
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise DeploymentError(
                    f"the SuperLink exited with code {proc.popen.returncode} while starting "
                    f"(is {host}:{port} in use?); last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
                )
            if reachable(host, port):
                try:
                    self.flwr.call("ls", CONNECTION, timeout=max(5.0, deadline - time.monotonic()))
                    return
                except DeploymentError as err:
                    last = str(err)
            time.sleep(0.5)
        where = "" if proc is None else f"; last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
        raise DeploymentError(
            f"the SuperLink at {host}:{port} is not reachable (no answer within "
            f"engine.startup_timeout={timeout:g} s){': ' + last if last else ''}{where}"
        )

    def _wait_nodes(self, timeout: float) -> None:
        assert self.flwr is not None
        deadline, online = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            self._check_alive()
            online = self.flwr.online_nodes()
            if online >= self.num_nodes:
                return
            time.sleep(0.5)
        raise DeploymentError(
            f"only {online} of {self.num_nodes} SuperNodes came online within engine.startup_timeout={timeout:g} s"
        )

    def _check_alive(self) -> None:
        for proc in self.procs.started:
            if proc.critical and proc.popen.poll() is not None:
                raise DeploymentError(
                    f"{proc.name} (pid {proc.pid}) exited with code {proc.popen.returncode} before the run "
                    f"finished; last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
                )

    # -------------------------------------------------------------- one run
    def run(self, cfg: dict[str, Any], write: bool = True) -> dict[str, Any]:
        """``flwr run`` one fedcomp experiment, wait for it, measure it; its record.

        With ``write`` the record goes to ``<output_dir>/deployment.json`` (also when the
        run fails, with ``status: "incomplete"``). Raises :class:`DeploymentError` when
        the run did not finish.
        """
        if self.flwr is None:
            raise DeploymentError("the federation is not started (call start() first)")
        output_dir = Path(cfg["output_dir"]).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "status": "incomplete",
            "reason": "",
            "flwr_run_id": None,
            "output_dir": str(output_dir),
            "superlink": self.superlink,
            "started_at": time.time(),
        }
        self.last_record = record
        started = time.monotonic()
        run_id: int | None = None
        try:
            run_id = self._submit({**cfg, "output_dir": str(output_dir)})  # the ServerApp runs elsewhere
            record["flwr_run_id"] = str(run_id)
            self.echo(f"deployment: flwr run id {run_id}; waiting for it to finish (polling flwr ls)")
            final = self._wait(run_id)
            record["run_status"] = final.get("status")
            record["compute_time"] = final.get("compute-time")
            traffic = final["network-traffic"]
            counters = {"outbound": int(traffic["outbound-bytes"]), "inbound": int(traffic["inbound-bytes"])}
            record["superlink_counters"] = counters
            record["agreement"] = self._measure(output_dir, counters, run_id)
            record["status"] = "complete"
        except BaseException as err:
            record["reason"] = _reason(err)
            if run_id is not None:
                self._stop_run(run_id, record)
            raise
        finally:
            record["wall_time_s"] = round(time.monotonic() - started, 3)
            if write:
                _finish_record(record, output_dir)
        return record

    def _submit(self, run_cfg: dict[str, Any]) -> int:
        """``flwr run`` the project with the fedcomp config as a run-config TOML file."""
        import tomli_w

        assert self.flwr is not None
        config_file = self.home / f"run_config_{uuid.uuid4().hex[:8]}.toml"
        config_file.write_text(tomli_w.dumps({RUN_CONFIG_KEY: json.dumps(run_cfg, default=str)}), encoding="utf-8")
        result = self.flwr.call("run", str(project_dir()), CONNECTION, "--run-config", str(config_file), timeout=300)
        if not result.get("run-id"):
            raise DeploymentError(f"`flwr run` did not return a run id: {result}")
        return int(result["run-id"])

    def _wait(self, run_id: int) -> dict[str, Any]:
        """Poll ``flwr ls`` until the run is finished; the final run entry.

        A ``flwr log --stream`` process copies the ServerApp's log to
        ``serverapp-<run id>.log`` (its round lines are echoed); its exit triggers an
        immediate poll.
        """
        assert self.flwr is not None
        timeout = float(_engine_value(self.engine, "run_timeout", 1800))
        interval = float(_engine_value(self.engine, "poll_interval", 2.0))
        deadline = time.monotonic() + timeout
        stream = self.procs.start(
            f"serverapp-{run_id}", [self.flwr.exe, "log", str(run_id), CONNECTION, "--stream"],
            cwd=self.home, critical=False,
        )  # fmt: skip
        echoed, next_poll, stream_was_done = 0, 0.0, False
        while True:
            echoed = _echo_rounds(stream.log_path, echoed, self.echo)
            stream_done = stream.popen.poll() is not None
            if time.monotonic() >= next_poll or stream_done != stream_was_done:
                stream_was_done, next_poll = stream_done, time.monotonic() + interval
                status = self.flwr.run_status(run_id)
                self.procs.remember_descendants()
                state = str(status.get("status", ""))
                if state.startswith("finished"):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        stream.popen.wait(timeout=5)
                    _echo_rounds(stream.log_path, echoed, self.echo)
                    if state != "finished:completed":
                        raise DeploymentError(
                            f"flwr run {run_id} ended as {state!r} {status.get('status-details') or ''}; "
                            f"last lines of the ServerApp log:\n{log_tail(stream.log_path)}"
                        )
                    return status
            self._check_alive()
            if time.monotonic() > deadline:
                raise DeploymentError(f"flwr run {run_id} did not finish within engine.run_timeout={timeout:g} s")
            time.sleep(0.25)

    def _stop_run(self, run_id: int, record: dict[str, Any]) -> None:
        """Ask the SuperLink to stop an unfinished run; note its counters so far."""
        if self.flwr is None:
            return
        with contextlib.suppress(DeploymentError), ignore_signals():
            status = self.flwr.run_status(run_id)
            record["run_status"] = status.get("status")
            traffic = status.get("network-traffic") or {}
            record["superlink_counters_at_stop"] = {
                "inbound": traffic.get("inbound-bytes"),
                "outbound": traffic.get("outbound-bytes"),
            }
            if not str(status.get("status", "")).startswith("finished"):
                self.flwr.call("stop", str(run_id), CONNECTION, timeout=30)
                record["run_status"] = "stopped by fedcomp"

    def _measure(self, output_dir: Path, counters: dict[str, int], run_id: int) -> dict[str, Any]:
        import pandas as pd

        from fedcomp.core.rundir import LEDGER_FILE

        if not (output_dir / LEDGER_FILE).is_file():
            raise DeploymentError(f"the run finished but {output_dir / LEDGER_FILE} is missing")
        ledger = pd.read_parquet(output_dir / LEDGER_FILE)
        if self.traffic_path is None:
            return raw_agreement(counters, ledger)
        return reconcile(read_traffic(self.traffic_path, run_id), ledger, counters)


def _echo_rounds(path: Path, offset: int, echo: Any) -> int:
    """Echo the ServerApp's per-round lines written to ``path`` after ``offset``; the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        text = line.strip()
        if text.startswith("round ") and "/" in text.split()[1]:
            echo("  " + text)
    return offset + end
