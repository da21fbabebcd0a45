"""The ``flwr`` CLI against one SuperLink, from a private Flower home: submit, poll, stop.

Every call is ``flwr <command> ... --format json`` with ``FLWR_HOME`` set to a temporary
directory whose ``config.toml`` names one SuperLink connection (``fedcomp``): over TLS
with the run's CA as the only root certificate, or ``insecure = true``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import tomli_w

from fedcomp.core.paths import PROJECT_DIR
from fedcomp.engines.deployment.errors import DeploymentError
from fedcomp.engines.deployment.processes import Processes, Started, ignore_signals, log_tail, reachable
from fedcomp.flower.protocol import RUN_CONFIG_KEY

#: The name of the one SuperLink connection in the private Flower home.
CONNECTION = "fedcomp"


def executable(name: str) -> str:
    """An executable of this Python environment (Flower's console scripts)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise DeploymentError(f"'{name}' not found next to {sys.executable} or on PATH (install flwr)")
    return found


def project_dir() -> Path:
    """The directory holding fedcomp's pyproject.toml with the Flower App declaration."""
    pyproject = PROJECT_DIR / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text(encoding="utf-8"):
        raise DeploymentError(
            f"{pyproject} does not declare the Flower App ([tool.flwr.app]); "
            "the deployment engine needs fedcomp installed from its source tree (pip install -e .)"
        )
    return PROJECT_DIR


def first_json(text: str) -> dict[str, Any]:
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
    """The ``flwr`` CLI against one SuperLink connection in a private FLWR_HOME.

    Parameters
    ----------
    home
        The private Flower home (``config.toml`` is written there).
    address
        ``host:port`` of the SuperLink.
    env
        The environment of every ``flwr`` call (with ``FLWR_HOME=home``).
    root_certificates
        The CA that signed the SuperLink's certificate (TLS), or None (``insecure = true``).
    """

    def __init__(self, home: Path, address: str, env: dict[str, str], root_certificates: Path | None = None) -> None:
        self.home, self.address, self.env = home, address, env
        self.exe = executable("flwr")
        security: dict[str, Any] = (
            {"root-certificates": str(root_certificates)} if root_certificates else {"insecure": True}
        )
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: {"address": address, **security}}}),
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
            data = first_json(done.stdout)
        except ValueError:
            data = {}
        if done.returncode != 0 or not data.get("success", False):
            detail = data.get("error-message") or (done.stderr or done.stdout).strip()[-800:]
            raise DeploymentError(f"`flwr {' '.join(args)}` failed (exit {done.returncode}): {detail}")
        return data

    # -------------------------------------------------------------- the SuperLink and its nodes
    def wait_ready(self, proc: Started | None, timeout: float) -> None:
        """Until the SuperLink answers ``flwr ls``; DeploymentError when it exits or times out."""
        host, _, port = self.address.rpartition(":")
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise DeploymentError(
                    f"the SuperLink exited with code {proc.popen.returncode} while starting "
                    f"(is {self.address} in use?); last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
                )
            if reachable(host, int(port)):
                try:
                    self.call("ls", CONNECTION, timeout=max(5.0, deadline - time.monotonic()))
                    return
                except DeploymentError as err:
                    last = str(err)
            time.sleep(0.5)
        where = "" if proc is None else f"; last lines of {proc.log_path}:\n{log_tail(proc.log_path)}"
        raise DeploymentError(
            f"the SuperLink at {self.address} is not reachable (no answer within "
            f"engine.startup_timeout={timeout:g} s){': ' + last if last else ''}{where}"
        )

    def nodes(self) -> list[dict[str, Any]]:
        """``flwr supernode ls``: one entry per SuperNode the SuperLink knows."""
        return list(self.call("supernode", "ls", CONNECTION).get("nodes", []))

    def online_nodes(self) -> int:
        """How many SuperNodes are online now."""
        return sum(1 for n in self.nodes() if n.get("status") == "online")

    def register_supernode(self, public_key: Path) -> str:
        """``flwr supernode register``: admit the node holding ``public_key``'s private key; its node id."""
        return str(self.call("supernode", "register", str(public_key), CONNECTION)["node-id"])

    # -------------------------------------------------------------- one run
    def submit(self, run_cfg: dict[str, Any], federation_config: dict[str, Any] | None = None) -> int:
        """``flwr run`` the project with the fedcomp config as a run-config TOML file; the run id.

        The TOML file holds one key, ``fedcomp-config``: the resolved config as a JSON
        string (no shell or TOML quoting involved). ``federation_config`` becomes
        ``--federation-config key=value`` (the simulation runtime's settings).
        """
        config_file = self.home / f"run_config_{uuid.uuid4().hex[:8]}.toml"
        config_file.write_text(tomli_w.dumps({RUN_CONFIG_KEY: json.dumps(run_cfg, default=str)}), encoding="utf-8")
        args = ["run", str(project_dir()), CONNECTION, "--run-config", str(config_file)]
        for key, value in (federation_config or {}).items():
            args += ["--federation-config", f"{key}={json.dumps(value)}"]
        result = self.call(*args, timeout=300)
        if not result.get("run-id"):
            raise DeploymentError(f"`flwr run` did not return a run id: {result}")
        return int(result["run-id"])

    def run_status(self, run_id: int) -> dict[str, Any]:
        """The run's entry of ``flwr ls --run-id`` (status, network traffic, times)."""
        return self.call("ls", CONNECTION, "--run-id", str(run_id))["runs"][0]

    def wait_run(self, run_id: int, procs: Processes, timeout: float, interval: float, echo: Any) -> dict[str, Any]:
        """Poll ``flwr ls`` until the run is finished; the final run entry.

        A ``flwr log --stream`` process copies the ServerApp's log to
        ``serverapp-<run id>.log`` (its round lines are echoed); its exit triggers an
        immediate poll. DeploymentError when the run ends other than ``finished:completed``,
        a critical process exits, or ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        stream = procs.start(
            f"serverapp-{run_id}", [self.exe, "log", str(run_id), CONNECTION, "--stream"], cwd=self.home, critical=False
        )
        echoed, next_poll, stream_was_done = 0, 0.0, False
        while True:
            echoed = _echo_rounds(stream.log_path, echoed, echo)
            stream_done = stream.popen.poll() is not None
            if time.monotonic() >= next_poll or stream_done != stream_was_done:
                stream_was_done, next_poll = stream_done, time.monotonic() + interval
                status = self.run_status(run_id)
                procs.remember_descendants()
                state = str(status.get("status", ""))
                if state.startswith("finished"):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        stream.popen.wait(timeout=5)
                    _echo_rounds(stream.log_path, echoed, echo)
                    if state != "finished:completed":
                        raise DeploymentError(
                            f"flwr run {run_id} ended as {state!r} {status.get('status-details') or ''}; "
                            f"last lines of the ServerApp log:\n{log_tail(stream.log_path)}"
                        )
                    return status
            procs.check_alive()
            if time.monotonic() > deadline:
                raise DeploymentError(f"flwr run {run_id} did not finish within engine.run_timeout={timeout:g} s")
            time.sleep(0.25)

    def stop_run(self, run_id: int, record: dict[str, Any]) -> None:
        """Ask the SuperLink to stop an unfinished run; note its status and counters so far."""
        with contextlib.suppress(DeploymentError), ignore_signals():
            status = self.run_status(run_id)
            record["run_status"] = status.get("status")
            traffic = status.get("network-traffic") or {}
            record["superlink_counters_at_stop"] = {
                "inbound": traffic.get("inbound-bytes"),
                "outbound": traffic.get("outbound-bytes"),
            }
            if not str(status.get("status", "")).startswith("finished"):
                self.call("stop", str(run_id), CONNECTION, timeout=30)
                record["run_status"] = "stopped by fedcomp"


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
