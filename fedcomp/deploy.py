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
   compared with the ledger's ``wire_bytes`` (server rows) per direction and written,
   with a per-request reconciliation, to ``<output_dir>/deployment.json``;
7. every process started (and every process they started) is stopped, by PID, also on
   failure and on SIGINT/SIGTERM/SIGHUP.

Measurement
-----------
``down`` is the SuperLink's outbound traffic (to SuperNodes), ``up`` its inbound traffic.
Flower 1.42 counts, per run (``flwr/superlink/servicer/fleet/fleet_handlers.py``):
``PullMessages`` request and response ``ByteSize()`` (only calls that returned a
message), ``PushMessages`` request and response ``ByteSize()``, ``PushObject``
``len(object_content)`` when the object was stored, ``PullObject`` ``len(content)``.
fedcomp's ``wire_bytes`` counts the objects only (:mod:`fedcomp.fl.wire`). With
``engine.traffic_log`` (default) the SuperLink runs with an observer that logs every
counted request (:func:`superlink_main`; the counters themselves are Flower's, unchanged),
and :func:`reconcile` splits the counters into model-message objects (what the ledger
measures), fedcomp's ``fedcomp.ledger`` bookkeeping record, the one-off ``query``
messages, the PushMessages/PullMessages envelopes and objects the SuperLink or a SuperNode
did not transfer again (de-duplication). The parts sum to the counters to the byte.

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

DEPLOYMENT_FILE = "deployment.json"
LOG_DIR = "deployment"
TRAFFIC_FILE = "traffic.jsonl"
CONNECTION = "fedcomp"
RUN_CONFIG_KEY = "fedcomp-config"  # fedcomp.fl.client_app.RUN_CONFIG_KEY (not imported: no torch here)
LEDGER_RECORD = "fedcomp.ledger"  # fedcomp.fl.records.LEDGER
TAG_VAR = "FEDCOMP_DEPLOY_TAG"
TRAFFIC_VAR = "FEDCOMP_TRAFFIC_LOG"
MODEL_MESSAGE_TYPES = ("train", "evaluate")

DEPLOY_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # else `uv sync` pulls a CUDA torch
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "PYTHONUNBUFFERED": "1",
}


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
    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return ports


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
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != b"Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


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
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        critical: bool = True,
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

    def exited(self) -> list[Started]:
        return [p for p in self.started if p.popen.poll() is not None]

    def _ours(self) -> set[int]:
        """PIDs that are ours now: running direct children and live tagged processes.

        Only these are ever signalled, so a PID seen earlier and since reused by someone
        else's process is never touched.
        """
        return {p.pid for p in self.started if p.popen.poll() is None} | set(_proc_tagged(self.tag))

    def stop_all(self) -> list[int]:
        """SIGTERM our process groups and tagged processes, then SIGKILL; return survivors."""
        self.remember_descendants()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in self.started:
                if proc.popen.poll() is None:  # not reaped: its pid (= pgid) is still ours
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            for pid in _proc_tagged(self.tag):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + (self.stop_timeout if sig == signal.SIGTERM else 5.0)
            while self._ours() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self._ours():
                break
        return sorted(self._ours())


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP (and SIGINT) into :class:`Interrupted` while deploying."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def ignore_signals() -> Iterator[None]:
    """Let the clean-up finish: ignore SIGINT/SIGTERM/SIGHUP meanwhile (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------- Flower CLI


def _bin(name: str) -> str:
    """An executable of this Python environment (Flower's console scripts)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(f"'{name}' not found next to {sys.executable} or on PATH (install flwr)")
    return found


def project_dir() -> Path:
    """The directory holding fedcomp's pyproject.toml with the Flower App declaration."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text(encoding="utf-8"):
        raise DeploymentError(
            f"{pyproject} does not declare the Flower App ([tool.flwr.app]); "
            "the deployment engine needs fedcomp installed from its source tree (pip install -e .)"
        )
    return root


def _last_json(text: str) -> dict[str, Any]:
    """The JSON object a ``flwr ... --format json`` command printed (last one wins)."""
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            pass
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
            if isinstance(obj, dict):
                return obj
        except json.JSONDecodeError:
            pass
        start = text.find("{", start + 1)
    raise ValueError(f"no JSON in output: {text[-500:]!r}")


class FlwrCli:
    """The ``flwr`` CLI against one SuperLink connection in a private FLWR_HOME."""

    def __init__(self, home: Path, address: str, env: dict[str, str]) -> None:
        self.home = home
        self.address = address
        self.env = env
        self.exe = _bin("flwr")
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{address}"\ninsecure = true\n',
            encoding="utf-8",
        )

    def call(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``flwr <args> --format json``; the parsed JSON (DeploymentError on failure)."""
        argv = [self.exe, *args, "--format", "json"]
        try:
            done = subprocess.run(
                argv, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise DeploymentError(f"`flwr {' '.join(args)}` did not answer within {timeout:g} s") from err
        try:
            data = _last_json(done.stdout)
        except ValueError:
            data = {}
        if done.returncode != 0 or not data.get("success", False):
            detail = data.get("error-message") or (done.stderr or done.stdout).strip()[-800:]
            raise DeploymentError(f"`flwr {' '.join(args)}` failed (exit {done.returncode}): {detail}")
        return data

    def run_status(self, run_id: int) -> dict[str, Any]:
        runs = self.call("ls", CONNECTION, "--run-id", str(run_id))["runs"]
        return runs[0]

    def online_nodes(self) -> int:
        nodes = self.call("supernode", "ls", CONNECTION).get("nodes", [])
        return sum(1 for n in nodes if n.get("status") == "online")


# ---------------------------------------------------------------------------- SuperLink observer


def superlink_main() -> None:
    """``flower-superlink`` with an observer that logs every request Flower counts.

    Started as ``python -c "from fedcomp.deploy import superlink_main; superlink_main()"
    <flower-superlink args>``. It wraps ``LinkState.store_traffic`` (the one place Flower
    adds to a run's counters; the counting itself is unchanged) and the four Fleet API
    handlers that call it, and appends one JSON line per counted request to
    ``$FEDCOMP_TRAFFIC_LOG``: kind, node, bytes sent/received, the messages and object
    ids of PushMessages/PullMessages, the object id, type and size of
    PushObject/PullObject (and the record names of a ``RecordDict`` object).
    """
    from flwr.server.superlink.linkstate import in_memory_linkstate
    from flwr.superlink.cli import flower_superlink
    from flwr.superlink.servicer.fleet import fleet_handlers

    path = os.environ[TRAFFIC_VAR]
    sink = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process
    lock = threading.Lock()
    local = threading.local()

    def emit(record: dict[str, Any]) -> None:
        with lock:
            sink.write(json.dumps(record) + "\n")

    classes = [in_memory_linkstate.InMemoryLinkState]
    with contextlib.suppress(ImportError):
        from flwr.server.superlink.linkstate import sql_linkstate

        classes.append(sql_linkstate.SqlLinkState)
    for cls in classes:
        original = cls.store_traffic

        def store_traffic(self: Any, run_id: int, *, bytes_sent: int, bytes_recv: int, _orig: Any = original) -> None:
            _orig(self, run_id, bytes_sent=bytes_sent, bytes_recv=bytes_recv)
            calls = getattr(local, "calls", None)
            if calls is not None:
                calls.append((int(run_id), int(bytes_sent), int(bytes_recv)))
            else:
                emit({"kind": "other", "run_id": str(run_id), "sent": bytes_sent, "recv": bytes_recv})

        cls.store_traffic = store_traffic

    def messages(protos: Any, trees: Any) -> list[dict[str, Any]]:
        from flwr.supercore.inflatable.inflatable_object import iterate_object_tree

        out = []
        for proto, tree in zip(protos, trees):
            md = proto.metadata
            out.append(
                {
                    "message_id": tree.object_id,
                    "type": md.message_type,
                    "src": str(md.src_node_id),
                    "dst": str(md.dst_node_id),
                    "reply_to": md.reply_to_message_id,
                    "group_id": md.group_id,
                    "has_error": proto.HasField("error"),
                    "objects": [t.object_id for t in iterate_object_tree(tree)],
                }
            )
        return out

    def obj(object_id: str, content: bytes) -> dict[str, Any]:
        from flwr.supercore.constant import HEAD_BODY_DIVIDER

        head, _, body = content.partition(HEAD_BODY_DIVIDER)
        parts = head.decode("utf-8", "replace").split(" ")
        info: dict[str, Any] = {"object_id": object_id, "type": parts[0], "size": len(content)}
        if parts[0] in ("RecordDict", "Message", "ConfigRecord"):
            info["raw"] = base64.b64encode(content).decode()
        if parts[0] == "RecordDict":
            info["head"] = head.decode("utf-8", "replace")
            info["refs"] = json.loads(body.decode("utf-8"))
        return info

    import base64
    b64 = lambda m: base64.b64encode(m.SerializeToString()).decode()
    describe = {
        "pull_messages": lambda req, res: {"messages": messages(res.messages_list, res.message_object_trees), "req_raw": b64(req), "res_raw": b64(res)},
        "push_messages": lambda req, res: {
            "messages": messages(req.messages_list, req.message_object_trees),
            "objects_to_push": list(res.objects_to_push), "req_raw": b64(req), "res_raw": b64(res),
        },
        "push_object": lambda req, res: obj(req.object_id, req.object_content),
        "pull_object": lambda req, res: obj(req.object_id, res.object_content),
    }

    def wrap(name: str) -> None:
        original = getattr(fleet_handlers, name)

        def handler(*args: Any, **kwargs: Any) -> Any:
            local.calls = []
            response = None
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
    """The observer's records of one run."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if rec.get("run_id") == str(run_id):
                records.append(rec)
    return records


# ---------------------------------------------------------------------------- reconciliation


def _stripped_recorddict_size(info: dict[str, Any]) -> int:
    """Size of a RecordDict object without its ``fedcomp.ledger`` record (as the ledger measures it)."""
    refs = {k: v for k, v in info["refs"].items() if k != LEDGER_RECORD}
    body = json.dumps(refs).encode("utf-8")
    kind, children, _ = info["head"].split(" ")
    kept = list(dict.fromkeys(refs.values()))
    children_ids = [c for c in children.split(",") if c in kept] if children else []
    head = f"{kind} {','.join(children_ids)} {len(body)}".encode()
    return len(head) + 1 + len(body)


@dataclass
class WireMessage:
    """One message as the SuperLink moved it."""

    message_id: str
    direction: str  # down (pulled by a SuperNode) | up (pushed by a SuperNode)
    node: str
    type: str
    reply_to: str
    objects: list[str]
    envelope_down: int = 0  # bytes of the request/response counted as outbound
    envelope_up: int = 0
    object_bytes: int = 0  # objects actually transferred for it
    bookkeeping: int = 0  # fedcomp.ledger record and its reference in the RecordDict
    not_transferred: list[str] = field(default_factory=list)
    transferred: set[str] = field(default_factory=set)
    object_set: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.object_set = set(self.objects)

    @property
    def model_bytes(self) -> int:
        return self.object_bytes - self.bookkeeping


def reconcile(traffic: list[dict[str, Any]], ledger: Any, counters: dict[str, int] | None = None) -> dict[str, Any]:
    """Split the SuperLink's counted bytes into what the ledger measures and the rest.

    Parameters
    ----------
    traffic
        The observer's records of the run (:func:`read_traffic`).
    ledger
        The run's ledger (DataFrame); its ``recorded_by == "server"`` rows are compared.
    counters
        ``{"outbound": ..., "inbound": ...}`` from ``flwr ls``; checked against the log.

    Returns
    -------
    dict
        ``by_direction``: per direction the parts (``model_objects``, ``bookkeeping``,
        ``query_objects``, ``other_objects``, ``envelopes``) that sum to the SuperLink's
        figure, the ledger's wire bytes, and ``model_objects`` vs ledger; ``messages``:
        one row per model message, ledger wire beside the SuperLink's object bytes;
        ``not_transferred``: objects of a message the SuperLink or SuperNode did not move
        again (already held), with their size where known.
    """
    msgs: dict[str, WireMessage] = {}
    order: list[WireMessage] = []
    sizes: dict[str, int] = {}
    recorddicts: dict[str, dict[str, Any]] = {}
    latest: dict[tuple[str, str], list[WireMessage]] = defaultdict(list)  # (direction, node) -> messages
    other = {"down": 0, "up": 0}
    logged = {"down": 0, "up": 0}
    unattributed = {"down": 0, "up": 0}

    for rec in sorted(traffic, key=lambda r: r.get("time", 0.0)):
        logged["down"] += int(rec["sent"])
        logged["up"] += int(rec["recv"])
        kind = rec["kind"]
        if kind in ("pull_messages", "push_messages"):
            direction = "down" if kind == "pull_messages" else "up"
            for i, m in enumerate(rec.get("messages", [])):
                wm = WireMessage(m["message_id"], direction, rec["node"], m["type"], m["reply_to"], m["objects"])
                if i == 0:  # one request/response pair, whatever it carried
                    wm.envelope_down, wm.envelope_up = int(rec["sent"]), int(rec["recv"])
                if direction == "up":
                    pushed = set(rec.get("objects_to_push", []))
                    wm.not_transferred = [o for o in wm.objects if o not in pushed]
                msgs[wm.message_id] = wm
                order.append(wm)
                latest[(direction, rec["node"])].append(wm)
            if not rec.get("messages"):
                other["down"] += int(rec["sent"])
                other["up"] += int(rec["recv"])
        elif kind in ("pull_object", "push_object"):
            direction = "down" if kind == "pull_object" else "up"
            size = int(rec["sent"]) if direction == "down" else int(rec["recv"])
            oid = rec.get("object_id", "")
            sizes[oid] = size
            if rec.get("type") == "RecordDict" and "refs" in rec:
                recorddicts[oid] = rec
            owner = next((m for m in reversed(latest[(direction, rec["node"])]) if oid in m.object_set), None)
            if owner is None:
                unattributed[direction] += size
                continue
            owner.object_bytes += size
            owner.transferred.add(oid)
        else:
            other["down"] += int(rec["sent"])
            other["up"] += int(rec["recv"])

    for wm in order:
        if wm.direction == "down":
            wm.not_transferred = [o for o in dict.fromkeys(wm.objects) if o not in wm.transferred]
        for oid in wm.transferred:
            info = recorddicts.get(oid)
            if info and LEDGER_RECORD in info["refs"]:
                ledger_id = info["refs"][LEDGER_RECORD]
                wm.bookkeeping += info["size"] - _stripped_recorddict_size(info)
                if ledger_id in wm.transferred:
                    wm.bookkeeping += sizes[ledger_id]

    by_direction: dict[str, dict[str, Any]] = {}
    server = ledger[ledger["recorded_by"] == "server"] if ledger is not None else None
    for direction in ("down", "up"):
        env_key = "envelope_down" if direction == "down" else "envelope_up"
        mine = [m for m in order if m.direction == direction]
        # a request/response pair is counted in both directions; attribute each side to its direction
        envelopes = sum(getattr(m, env_key) for m in order)
        envelope_detail = {
            "pull_messages": sum(getattr(m, env_key) for m in order if m.direction == "down"),
            "push_messages": sum(getattr(m, env_key) for m in order if m.direction == "up"),
        }
        model = sum(m.model_bytes for m in mine if m.type in MODEL_MESSAGE_TYPES)
        parts = {
            "model_objects": model,
            "bookkeeping": sum(m.bookkeeping for m in mine),
            "query_objects": sum(m.object_bytes for m in mine if m.type == "query"),
            "other_objects": sum(m.object_bytes for m in mine if m.type not in (*MODEL_MESSAGE_TYPES, "query"))
            + unattributed[direction],
            "envelopes": envelopes,
            "other_requests": other[direction],
        }
        total = sum(parts.values())
        ledger_wire = int(server[server["direction"] == direction]["wire_bytes"].sum()) if server is not None else 0
        not_moved = [(m, o) for m in mine for o in m.not_transferred]
        by_direction[direction] = {
            "parts": parts,
            "superlink_logged": logged[direction],
            "parts_sum": total,
            "envelopes_by_request": envelope_detail,
            "ledger_wire": ledger_wire,
            "model_vs_ledger_bytes": ledger_wire - model,
            "model_vs_ledger_pct": _pct(ledger_wire - model, model),
            "not_transferred_objects": len(not_moved),
            "not_transferred_bytes_known": sum(sizes.get(o, 0) for _, o in not_moved),
            "messages": {t: sum(1 for m in mine if m.type == t) for t in sorted({m.type for m in mine})},
        }
    counters_ok = None
    if counters is not None:
        counters_ok = logged["down"] == counters["outbound"] and logged["up"] == counters["inbound"]
    return {
        "by_direction": by_direction,
        "log_matches_counters": counters_ok,
        "messages": _message_rows(order, server),
    }


def _message_rows(order: list[WireMessage], server: Any) -> list[dict[str, Any]]:
    """Model messages in SuperLink order, each beside its ledger row (matched per node and phase)."""
    rows = []
    queues: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    if server is not None:
        for row in server.sort_values("round", kind="stable").to_dict("records"):
            queues[(row["direction"], str(row["node_id"]), row["phase"])].append(row)
    for m in order:
        if m.type not in MODEL_MESSAGE_TYPES:
            continue
        queue = queues[(m.direction, m.node, m.type)]
        match = queue.pop(0) if queue else None
        rows.append(
            {
                "direction": m.direction,
                "node_id": m.node,
                "phase": m.type,
                "round": int(match["round"]) if match else None,
                "partition_id": int(match["partition_id"]) if match else None,
                "ledger_wire": int(match["wire_bytes"]) if match else None,
                "superlink_objects": m.object_bytes,
                "bookkeeping": m.bookkeeping,
                "superlink_model_objects": m.model_bytes,
                "envelope": m.envelope_down + m.envelope_up,
                "objects": len(set(m.objects)),
                "not_transferred": len(m.not_transferred),
            }
        )
    return rows


def _pct(diff: float, base: float) -> float | None:
    return round(100.0 * diff / base, 3) if base else None


def agreement(counters: dict[str, int], ledger: Any) -> dict[str, Any]:
    """Ledger wire bytes (server rows) vs the SuperLink's counters, per direction."""
    server = ledger[ledger["recorded_by"] == "server"]
    out = {}
    for direction, key in (("down", "outbound"), ("up", "inbound")):
        wire = int(server[server["direction"] == direction]["wire_bytes"].sum())
        link = int(counters[key])
        out[direction] = {
            "superlink": link,
            "superlink_counter": f"{key}-bytes",
            "ledger_wire": wire,
            "diff_bytes": wire - link,
            "diff_pct": _pct(wire - link, link),
        }
    return out


def format_report(record: dict[str, Any]) -> str:
    """The lines the recipe prints about traffic agreement."""
    lines = [f"deployment: {record['status']} (flwr run id {record.get('flwr_run_id')})"]
    if record.get("reason"):
        lines.append(f"  reason: {record['reason']}")
    agree = record.get("agreement")
    if agree:
        lines.append("  SuperLink counters (flwr ls) vs ledger wire_bytes (server rows):")
        for direction, label in (("down", "outbound"), ("up", "inbound ")):
            a = agree[direction]
            lines.append(
                f"    {direction:<4} SuperLink {label} {a['superlink']:>12,} B | ledger {a['ledger_wire']:>12,} B"
                f" | diff {a['diff_bytes']:>+10,} B ({a['diff_pct']:+.2f}%)"
            )
    rec = record.get("reconciliation")
    if rec:
        lines.append("  SuperLink bytes by what they carried (from the SuperLink's request log):")
        for direction in ("down", "up"):
            d = rec["by_direction"][direction]
            p = d["parts"]
            lines.append(
                f"    {direction:<4} model-message objects {p['model_objects']:,} B vs ledger {d['ledger_wire']:,} B"
                f" ({_fmt_pct(d['model_vs_ledger_pct'])}); envelopes {p['envelopes']:,} B;"
                f" query {p['query_objects']:,} B; fedcomp.ledger record {p['bookkeeping']:,} B;"
                f" other {p['other_objects'] + p['other_requests']:,} B;"
                f" objects not re-sent {d['not_transferred_objects']}"
            )
        if rec.get("log_matches_counters") is not None:
            lines.append(f"    request log sums to the counters exactly: {rec['log_matches_counters']}")
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
    from fedcomp.config import ConfigError

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
        leftovers = fed.close()
        record.update(fed.describe())
        record["leftover_pids"] = leftovers
        _finish_record(record, output_dir)
        echo(format_report(record))
    if error is not None:
        if isinstance(error, DeploymentError):
            raise error
        raise DeploymentError(record["reason"]) from error
    if record["status"] != "complete":
        raise DeploymentError(record["reason"])
    return record


def _finish_record(record: dict[str, Any], output_dir: Path) -> None:
    """Check the run directory and write ``deployment.json``."""
    from fedcomp.results import is_complete, write_json

    record["results_complete"] = is_complete(output_dir)
    if record["status"] == "complete" and not record["results_complete"]:
        record["status"] = "incomplete"
        record["reason"] = "the run finished but the ServerApp did not write all four result files"
    write_json(output_dir / DEPLOYMENT_FILE, record)


def _child_env(home: Path) -> dict[str, str]:
    from fedcomp.engine import QUIET_ENV

    env = {**os.environ, **QUIET_ENV, **DEPLOY_ENV, "FLWR_HOME": str(home)}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")  # Flower starts flower-superexec by name
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
        startup_timeout = float(_engine_value(engine, "startup_timeout", 120))
        external = engine.get("superlink_address")
        # pick every free port at once, so that none is handed out twice
        configured = {int(p) for p in [engine.get("superlink_port"), *(engine.get("supernode_ports") or [])] if p}
        spare = [p for p in free_ports(self.host, 2 * (self.num_nodes + 1)) if p not in configured]
        if external:
            link_host, link_port = split_address(external)
            address = f"{link_host}:{link_port}"
            self.superlink = {"address": address, "started_by_fedcomp": False}
            self.flwr = FlwrCli(self.home, address, self.procs.env)
            self._wait_superlink(link_host, link_port, None, startup_timeout)
        else:
            link_port = engine.get("superlink_port")
            if link_port is None:
                link_port = spare.pop()
            elif port_in_use(self.host, int(link_port)):
                raise DeploymentError(
                    f"engine.superlink_port={link_port}: port {self.host}:{link_port} is already in use"
                )
            address = f"{self.host}:{link_port}"
            link_args = ["--insecure", "--host", self.host, "--port", str(link_port)]
            extra_env = {}
            if _engine_value(engine, "traffic_log", True):
                self.traffic_path = self.log_dir / TRAFFIC_FILE
                self.traffic_path.unlink(missing_ok=True)
                extra_env[TRAFFIC_VAR] = str(self.traffic_path)
                argv = [sys.executable, "-c", "from fedcomp.deploy import superlink_main; superlink_main()", *link_args]
            else:
                argv = [_bin("flower-superlink"), *link_args]
            proc = self.procs.start("superlink", argv, env=extra_env, cwd=self.home)
            self.superlink = {"address": address, "started_by_fedcomp": True, "pid": proc.pid}
            self.echo(f"deployment: SuperLink on {address} (pid {proc.pid}), logs in {self.log_dir}")
            self.flwr = FlwrCli(self.home, address, self.procs.env)
            link = (self.host, int(link_port), proc)
        if not _engine_value(engine, "start_supernodes", True):
            if not external:
                self._wait_superlink(*link, startup_timeout)
            return
        node_ports = engine.get("supernode_ports") or spare[: self.num_nodes]
        for port in node_ports:
            if port_in_use(self.host, int(port)):
                raise DeploymentError(f"engine.supernode_ports: port {self.host}:{port} is already in use")
        for pid in range(self.num_nodes):
            argv = [
                _bin("flower-supernode"),
                "--insecure",
                "--superlink", address,
                "--host", self.host,
                "--port", str(node_ports[pid]),
                "--node-config", f"partition-id={pid} num-partitions={self.num_nodes}",
            ]  # fmt: skip
            node = self.procs.start(f"supernode-{pid}", argv, cwd=self.home)
            self.echo(f"deployment: SuperNode partition-id={pid} (pid {node.pid}, runtime port {node_ports[pid]})")
        if not external:  # the SuperNodes start (and retry connecting) while the SuperLink comes up
            self._wait_superlink(*link, startup_timeout)
        self._wait_nodes(startup_timeout)

    def close(self) -> list[int]:
        """Stop every process started (SIGTERM, then SIGKILL); the PIDs still alive after."""
        if self.closed:
            return self._leftovers
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
        deadline = time.monotonic() + timeout
        last = ""
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
        deadline = time.monotonic() + timeout
        online = 0
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
        for proc in self.procs.exited():
            if proc.critical:
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
        run_cfg = {**cfg, "output_dir": str(output_dir)}  # the ServerApp runs elsewhere: absolute path
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
            run_id = self._submit(run_cfg)
            record["flwr_run_id"] = str(run_id)
            self.echo(f"deployment: flwr run id {run_id}; waiting for it to finish (polling flwr ls)")
            final = self._wait(run_id)
            record["run_status"] = final.get("status")
            counters = {
                "inbound": int(final["network-traffic"]["inbound-bytes"]),
                "outbound": int(final["network-traffic"]["outbound-bytes"]),
            }
            record["superlink_counters"] = counters
            record["compute_time"] = final.get("compute-time")
            self._measure(record, output_dir, counters, run_id)
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
        progress = _Progress(stream.log_path, self.echo)
        next_poll, stream_seen_done = 0.0, False
        while True:
            progress.show()
            stream_done = stream.popen.poll() is not None
            if time.monotonic() >= next_poll or (stream_done and not stream_seen_done):
                stream_seen_done = stream_done
                next_poll = time.monotonic() + interval
                status = self.flwr.run_status(run_id)
                self.procs.remember_descendants()
                state = str(status.get("status", ""))
                if state.startswith("finished"):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        stream.popen.wait(timeout=5)
                    progress.show()
                    if state != "finished:completed":
                        detail = status.get("status-details") or ""
                        raise DeploymentError(
                            f"flwr run {run_id} ended as {state!r} {detail}; last lines of the ServerApp log:\n"
                            f"{log_tail(stream.log_path)}"
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

    def _measure(self, record: dict[str, Any], output_dir: Path, counters: dict[str, int], run_id: int) -> None:
        import pandas as pd

        from fedcomp.results import LEDGER_FILE

        ledger_path = output_dir / LEDGER_FILE
        if not ledger_path.is_file():
            raise DeploymentError(f"the run finished but {ledger_path} is missing")
        ledger = pd.read_parquet(ledger_path)
        record["agreement"] = agreement(counters, ledger)
        if self.traffic_path is not None:
            record["reconciliation"] = reconcile(read_traffic(self.traffic_path, run_id), ledger, counters)


class _Progress:
    """Echo the ServerApp's per-round lines as they appear in its log."""

    def __init__(self, path: Path, echo: Any) -> None:
        self.path, self.echo, self.offset = path, echo, 0

    def show(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            text = line.strip()
            if text.startswith("round ") and "/" in text.split()[1]:
                self.echo("  " + text)


# ---------------------------------------------------------------------------- CLI


def main() -> None:
    """``python -m fedcomp.deploy [hydra overrides]``: ``fedcomp.run`` with ``engine=deployment``."""
    import hydra
    from omegaconf import DictConfig

    from fedcomp.config import ConfigError, to_container

    if not any(arg.split("=")[0].lstrip("+~") == "engine" for arg in sys.argv[1:]):
        sys.argv.insert(1, "engine=deployment")

    @hydra.main(
        config_path=str(Path(__file__).resolve().parent.parent / "conf"), config_name="config", version_base=None
    )
    def _run(cfg: DictConfig) -> None:
        from fedcomp.run import execute

        try:
            execute(to_container(cfg))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except DeploymentError as err:
            print(f"error: deployment incomplete: {err}", file=sys.stderr)
            sys.exit(1)

    _run()


if __name__ == "__main__":
    # run the imported module's main, so that fedcomp.run and this entry point share one
    # DeploymentError class (``python -m`` would otherwise load this file twice)
    from fedcomp.deploy import main as _main

    _main()
