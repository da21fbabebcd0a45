"""Flower's Deployment Engine on one machine: a real SuperLink, N SuperNodes, ``flwr run``.

``python -m fedcomp.deploy [hydra overrides]`` (or ``python -m fedcomp.run
engine=deployment ...``, which calls :func:`deploy`) runs one fedcomp experiment the way a
real federation runs it, on loopback, secure by default:

1. a temporary ``FLWR_HOME`` whose ``config.toml`` names one SuperLink connection, and
   (``engine.tls``, ``engine.supernode_auth``) a private CA, a server certificate and
   one key pair per SuperNode in it (:mod:`~fedcomp.engines.deployment.credentials`);
2. ``flower-superlink --ssl-certfile ... --ssl-keyfile ... --ssl-ca-certfile ...
   --enable-supernode-auth --host 127.0.0.1 --port P`` (P free, chosen at run time),
   with an observer that logs every request Flower counts
   (:mod:`~fedcomp.engines.deployment.superlink`);
3. ``flwr supernode register supernode-<i>.pub`` for i in 0..N-1, then
   ``flower-supernode --root-certificates ca.pem --auth-supernode-private-key
   supernode-<i>.key --superlink 127.0.0.1:P --node-config "partition-id=i
   num-partitions=N"``;
4. ``flwr run <project> fedcomp --run-config <file>.toml --format json``: the whole
   fedcomp config travels as the run-config key ``fedcomp-config``;
5. ``flwr ls`` polled until the run is finished (the ServerApp writes the run directory);
6. the SuperLink's counters reconciled with the ledger
   (:mod:`~fedcomp.engines.deployment.reconcile`), written to
   ``<output_dir>/deployment.json`` with ``tls`` and ``supernode_auth``;
7. every process started (and every process they started) stopped by PID, and the
   Flower home with its keys removed, also on failure and on SIGINT/SIGTERM/SIGHUP
   (:mod:`~fedcomp.engines.deployment.processes`).

``engine.tls=false`` starts everything with ``--insecure`` (a one-line warning says so).

Failure handling
----------------
A SuperLink that does not answer, a port in use, a process that exits before the run
is over, a run that fails or times out: every process is stopped, ``deployment.json`` is
written with ``status: "incomplete"`` and the reason (process logs stay in
``<output_dir>/deployment/``), and :class:`DeploymentError` is raised. ``summary.json``
only exists when the ServerApp finished all rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcomp.core.errors import ConfigError
from fedcomp.engines.deployment.errors import DeploymentError
from fedcomp.engines.deployment.federation import DEPLOYMENT_FILE, LocalFederation, reason_of, write_record
from fedcomp.engines.deployment.processes import stop_on_signals
from fedcomp.engines.deployment.reconcile import format_report

#: The deployment's log folder in the run directory.
LOG_DIR = "deployment"
_TIMEOUTS = ("startup_timeout", "run_timeout", "poll_interval", "connect_timeout", "stop_timeout")

__all__ = ["DEPLOYMENT_FILE", "DeploymentError", "LocalFederation", "deploy"]


def check_supernodes_and_timeouts(cfg: dict[str, Any], timeouts: tuple[str, ...]) -> None:
    """``engine.num_supernodes`` equals ``federation.num_clients``; each ``engine.<timeout>`` > 0.

    Raises
    ------
    ConfigError
        Naming the key and the allowed values.
    """
    engine = cfg["engine"]
    num_clients = int(cfg["federation"]["num_clients"])
    nodes = engine.get("num_supernodes", num_clients)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes != num_clients:
        raise ConfigError(
            f"engine.num_supernodes: must equal federation.num_clients={num_clients} "
            f"(one SuperNode per partition), got {nodes!r}"
        )
    for key in timeouts:
        value = engine.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"engine.{key}: must be a number > 0, got {value!r}")


def check_config(cfg: dict[str, Any]) -> None:
    """The deployment's own keys; ConfigError naming the key and the allowed values."""
    check_supernodes_and_timeouts(cfg, _TIMEOUTS)
    engine = cfg["engine"]
    num_clients = int(cfg["federation"]["num_clients"])
    ports = engine.get("supernode_ports")
    if ports is not None and (not isinstance(ports, list) or len(ports) != num_clients):
        raise ConfigError(f"engine.supernode_ports: must be null or a list of {num_clients} ports, got {ports!r}")
    for key in ("tls", "supernode_auth"):
        if not isinstance(engine.get(key, True), bool):
            raise ConfigError(f"engine.{key}: must be true or false, got {engine.get(key)!r}")
    if engine.get("supernode_auth", True) and not engine.get("tls", True):
        raise ConfigError(
            "engine.supernode_auth: must be false when engine.tls=false "
            "(Flower authenticates SuperNodes only over TLS), got true"
        )
    root = engine.get("root_certificates")
    if engine.get("superlink_address") and engine.get("tls", True) and not (root and Path(root).is_file()):
        raise ConfigError(
            "engine.root_certificates: with engine.superlink_address and engine.tls=true, must name the "
            f"CA file that signed that SuperLink's certificate, got {root!r} (or set engine.tls=false)"
        )


def deploy(cfg: dict[str, Any], echo: Any = print) -> dict[str, Any]:
    """Run ``cfg`` on a local SuperLink and SuperNodes with ``flwr run``; see the module docstring.

    Starts the federation, runs the experiment, stops every process, writes
    ``<output_dir>/deployment.json`` and returns its record. Raises
    :class:`DeploymentError` when the run did not finish (the record says why).
    """
    check_config(cfg)
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
        record["reason"] = record.get("reason") or reason_of(err)
    finally:
        record["leftover_pids"] = fed.close()
        record["home_removed"] = not fed.home.exists()
        record.update(fed.describe())
        write_record(record, output_dir)
        echo(format_report(record))
    if isinstance(error, DeploymentError):
        raise error
    if error is not None or record["status"] != "complete":
        raise DeploymentError(record["reason"]) from error
    return record
