"""A local federation: one SuperLink and N SuperNodes on this machine, secure by default.

With ``engine.tls`` (default) the SuperLink serves its Fleet, Control and Runtime APIs
over TLS with a certificate signed by a CA created for this federation
(:mod:`fedcomp.engines.deployment.credentials`); the SuperNodes and ``flwr`` trust that
CA only. With ``engine.supernode_auth`` (default) the SuperLink runs with
``--enable-supernode-auth``: each SuperNode gets its own key pair, its public key is
registered with ``flwr supernode register`` before it starts, and a node whose key is
not registered is refused. Keys live in the federation's temporary Flower home and are
removed with it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import pandas as pd

from fedcomp.core.files import write_json
from fedcomp.core.rundir import LEDGER_FILE, is_complete
from fedcomp.engines.deployment.credentials import Credentials, create_credentials
from fedcomp.engines.deployment.errors import DeploymentError
from fedcomp.engines.deployment.flwr_cli import FlwrCli, executable
from fedcomp.engines.deployment.processes import (
    Processes,
    Started,
    flower_env,
    free_ports,
    ignore_signals,
    port_in_use,
    split_address,
)
from fedcomp.engines.deployment.reconcile import raw_agreement, reconcile
from fedcomp.engines.deployment.superlink import TRAFFIC_FILE, TRAFFIC_VAR, command, read_traffic

#: The deployment's record in the run directory (status, processes, counters, agreement).
DEPLOYMENT_FILE = "deployment.json"
#: Printed once when a deployment runs without TLS.
INSECURE_WARNING = (
    "deployment: WARNING engine.tls=false: SuperLink, SuperNodes and flwr talk plain HTTP, "
    "and any process that reaches the port may join (no encryption, no SuperNode authentication)"
)


def setting(engine: dict[str, Any], key: str, default: Any) -> Any:
    """``engine[key]``, or ``default`` when it is missing or null."""
    value = engine.get(key)
    return default if value is None else value


def reason_of(err: BaseException) -> str:
    """One line saying why a deployment stopped."""
    if isinstance(err, DeploymentError):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    return f"{type(err).__name__}: {err}"


def write_record(record: dict[str, Any], output_dir: Path) -> None:
    """Check the run directory and write ``deployment.json``."""
    record["results_complete"] = is_complete(output_dir)
    if record["status"] == "complete" and not record["results_complete"]:
        record["status"] = "incomplete"
        record["reason"] = "the run finished but the ServerApp did not write all four result files"
    write_json(output_dir / DEPLOYMENT_FILE, record)


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
    processes started, and removes the Flower home with its keys) yourself.
    """

    def __init__(self, engine: dict[str, Any], num_nodes: int, log_dir: Path, echo: Any = print) -> None:
        self.engine = engine
        self.num_nodes = num_nodes
        self.log_dir = Path(log_dir)
        self.echo = echo
        self.host = str(setting(engine, "host", "127.0.0.1"))
        self.tls = bool(setting(engine, "tls", True))
        self.supernode_auth = bool(setting(engine, "supernode_auth", True))
        self.home = Path(tempfile.mkdtemp(prefix="fedcomp-flwr-home-"))
        self.procs = Processes(flower_env(self.home), self.log_dir, float(setting(engine, "stop_timeout", 10)))
        self.credentials: Credentials | None = None
        self.flwr: FlwrCli | None = None
        self.traffic_path: Path | None = None
        self.superlink: dict[str, Any] = {}
        self.registered: list[str] = []
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
        """Start (or reach) the SuperLink, register and start the SuperNodes, wait until all are online."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        engine = self.engine
        timeout = float(setting(engine, "startup_timeout", 120))
        if not self.tls:
            self.echo(INSECURE_WARNING)
        if not engine.get("superlink_address") and (self.tls or self.supernode_auth):
            self.credentials = create_credentials(self.home / "credentials", self.host, self.num_nodes)
        # pick every free port at once, so that none is handed out twice
        configured = {int(p) for p in [engine.get("superlink_port"), *(engine.get("supernode_ports") or [])] if p}
        spare = [p for p in free_ports(self.host, 2 * (self.num_nodes + 1)) if p not in configured]
        link_proc = self._start_superlink(spare) if not engine.get("superlink_address") else None
        if link_proc is None:
            host, port = split_address(engine["superlink_address"])
            self.superlink = {"address": f"{host}:{port}", "started_by_fedcomp": False}
        self.flwr = flwr = FlwrCli(self.home, self.superlink["address"], self.procs.env, self._root_certificates())
        flwr.wait_ready(link_proc, timeout)
        if not setting(engine, "start_supernodes", True):
            return
        self._start_supernodes(flwr, engine.get("supernode_ports") or spare[: self.num_nodes])
        self._wait_nodes(flwr, timeout)

    def _root_certificates(self) -> Path | None:
        """The CA ``flwr`` and the SuperNodes trust (None without TLS)."""
        if not self.tls:
            return None
        if self.credentials is not None:
            return self.credentials.ca_cert
        return Path(str(setting(self.engine, "root_certificates", "")))

    def _start_superlink(self, spare: list[int]) -> Started:
        """Start our own SuperLink (TLS, SuperNode auth, request log as configured)."""
        engine = self.engine
        port = int(engine.get("superlink_port") or spare.pop())
        if engine.get("superlink_port") and port_in_use(self.host, port):
            raise DeploymentError(f"engine.superlink_port={port}: port {self.host}:{port} is already in use")
        args = ["--host", self.host, "--port", str(port)]
        if self.credentials is not None and self.tls:
            creds = self.credentials
            args += ["--ssl-certfile", str(creds.server_cert), "--ssl-keyfile", str(creds.server_key),
                     "--ssl-ca-certfile", str(creds.ca_cert)]  # fmt: skip
        else:
            args.append("--insecure")
        if self.supernode_auth:
            args.append("--enable-supernode-auth")
        argv, extra_env = [executable("flower-superlink"), *args], {}
        if setting(engine, "traffic_log", True):
            self.traffic_path = self.log_dir / TRAFFIC_FILE
            self.traffic_path.unlink(missing_ok=True)
            extra_env[TRAFFIC_VAR] = str(self.traffic_path)
            argv = command(args)
        proc = self.procs.start("superlink", argv, env=extra_env, cwd=self.home)
        self.superlink = {"address": f"{self.host}:{port}", "started_by_fedcomp": True, "pid": proc.pid}
        self.echo(f"deployment: SuperLink on {self.host}:{port} (pid {proc.pid}, tls={self.tls}, "
                  f"supernode_auth={self.supernode_auth}), logs in {self.log_dir}")  # fmt: skip
        return proc

    def _start_supernodes(self, flwr: FlwrCli, ports: list[int]) -> None:
        """Register each node's public key (with auth), then start the SuperNodes."""
        for port in ports:
            if port_in_use(self.host, int(port)):
                raise DeploymentError(f"engine.supernode_ports: port {self.host}:{port} is already in use")
        if self.supernode_auth and self.credentials is None:
            self.credentials = create_credentials(self.home / "credentials", self.host, self.num_nodes)
        creds, root = self.credentials, self._root_certificates()
        for i, port in enumerate(ports):
            argv = [
                executable("flower-supernode"), "--superlink", self.superlink["address"], "--host", self.host,
                "--port", str(port), "--node-config", f"partition-id={i} num-partitions={self.num_nodes}",
            ]  # fmt: skip
            argv += ["--root-certificates", str(root)] if root is not None else ["--insecure"]
            if self.tls and creds is not None:  # the SuperNode's own Runtime API (its ClientApps) too
                argv += ["--ssl-certfile", str(creds.server_cert), "--ssl-keyfile", str(creds.server_key),
                         "--ssl-ca-certfile", str(creds.ca_cert)]  # fmt: skip
            if self.supernode_auth and creds is not None:
                private, public = creds.node_keys[i]
                self.registered.append(flwr.register_supernode(public))
                argv += ["--auth-supernode-private-key", str(private)]
            node = self.procs.start(f"supernode-{i}", argv, cwd=self.home)
            self.echo(f"deployment: SuperNode partition-id={i} (pid {node.pid}, runtime port {port})")

    def _wait_nodes(self, flwr: FlwrCli, timeout: float) -> None:
        deadline, online = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            self.procs.check_alive()
            online = flwr.online_nodes()
            if online >= self.num_nodes:
                return
            time.sleep(0.5)
        raise DeploymentError(
            f"only {online} of {self.num_nodes} SuperNodes came online within engine.startup_timeout={timeout:g} s"
        )

    def close(self) -> list[int]:
        """Stop every process started (SIGTERM, then SIGKILL), remove the Flower home and its keys.

        Returns the PIDs still alive after.
        """
        if not self.closed:
            with ignore_signals():
                self._leftovers = self.procs.stop_all()
                shutil.rmtree(self.home, ignore_errors=True)
            self.closed = True
        return self._leftovers

    def describe(self) -> dict[str, Any]:
        """The federation as ``deployment.json`` records it."""
        return {
            "superlink": self.superlink,
            "tls": self.tls,
            "supernode_auth": self.supernode_auth,
            "registered_node_ids": self.registered,
            "processes": [p.describe() for p in self.procs.started],
            "stopped_pids": sorted(self.procs.seen),
            "process_tag": self.procs.tag,
        }

    # -------------------------------------------------------------- one run
    def run(self, cfg: dict[str, Any], write: bool = True) -> dict[str, Any]:
        """``flwr run`` one fedcomp experiment, wait for it, measure it; its record.

        With ``write`` the record goes to ``<output_dir>/deployment.json`` (also when the
        run fails, with ``status: "incomplete"``). Raises :class:`DeploymentError` when
        the run did not finish; :attr:`last_record` then holds what is known (run id,
        status, counters so far).
        """
        flwr = self.flwr
        if flwr is None:
            raise DeploymentError("the federation is not started (call start() first)")
        output_dir = Path(cfg["output_dir"]).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "status": "incomplete",
            "reason": "",
            "flwr_run_id": None,
            "output_dir": str(output_dir),
            "superlink": self.superlink,
            "tls": self.tls,
            "supernode_auth": self.supernode_auth,
            "started_at": time.time(),
        }
        self.last_record = record
        started = time.monotonic()
        run_id: int | None = None
        try:
            run_id = flwr.submit({**cfg, "output_dir": str(output_dir)})  # the ServerApp runs elsewhere
            record["flwr_run_id"] = str(run_id)
            self.echo(f"deployment: flwr run id {run_id}; waiting for it to finish (polling flwr ls)")
            final = flwr.wait_run(
                run_id, self.procs, float(setting(self.engine, "run_timeout", 1800)),
                float(setting(self.engine, "poll_interval", 2.0)), self.echo,
            )  # fmt: skip
            record["run_status"] = final.get("status")
            record["compute_time"] = final.get("compute-time")
            traffic = final["network-traffic"]
            counters = {"outbound": int(traffic["outbound-bytes"]), "inbound": int(traffic["inbound-bytes"])}
            record["superlink_counters"] = counters
            record["agreement"] = self._measure(output_dir, counters, run_id)
            record["status"] = "complete"
        except BaseException as err:
            record["reason"] = reason_of(err)
            if run_id is not None:
                flwr.stop_run(run_id, record)
            raise
        finally:
            record["wall_time_s"] = round(time.monotonic() - started, 3)
            if write:
                write_record(record, output_dir)
        return record

    def _measure(self, output_dir: Path, counters: dict[str, int], run_id: int) -> dict[str, Any]:
        if not (output_dir / LEDGER_FILE).is_file():
            raise DeploymentError(f"the run finished but {output_dir / LEDGER_FILE} is missing")
        ledger = pd.read_parquet(output_dir / LEDGER_FILE)
        if self.traffic_path is None:
            return raw_agreement(counters, ledger)
        return reconcile(read_traffic(self.traffic_path, run_id), ledger, counters)
