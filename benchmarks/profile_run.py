"""Where a fedcomp round spends its time: one in-process run under cProfile.

The in-process engine runs the ServerApp in the calling thread and the ClientApps on
one worker thread, so two profilers see all of it: one around the run (the ServerApp:
sampling, packing and measuring messages, decoding, aggregation, central evaluation)
and one around each ClientApp call (a ClientApp of this module that calls fedcomp's
ClientApp unchanged: training, the ledger mod, encoding). The plain Flower app of
:mod:`benchmarks.overhead` is profiled the same way, for comparison.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedcomp.engines.inprocess import run_inprocess
from fedcomp.flower.client_app import build_client_app
from fedcomp.flower.server_app import build_server_app

#: Rows kept per listing.
TOP = 15


def profiled(inner: ClientApp, profiler: cProfile.Profile) -> ClientApp:
    """A ClientApp that runs every message through ``inner`` under ``profiler``."""
    app = ClientApp()

    def call(msg: Message, context: Context) -> Message:
        return profiler.runcall(inner, message=msg, context=context)

    for register in (app.train, app.evaluate, app.query):
        register()(call)
    return app


def _listing(profiler: cProfile.Profile, rounds: int, only: str | None, order: str) -> list[dict[str, Any]]:
    """The top :data:`TOP` functions by ``order`` (``tottime``/``cumtime``), per round."""
    stats = pstats.Stats(profiler, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.items():
        if only is not None and only not in path:
            continue
        short = path.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append({"function": f"{short}:{line}({name})", "calls_per_round": calls / rounds,
                     "tottime_ms_per_round": tottime / rounds * 1e3, "cumtime_ms_per_round": cumtime / rounds * 1e3})
    key = "tottime_ms_per_round" if order == "tottime" else "cumtime_ms_per_round"
    return sorted(rows, key=lambda r: -r[key])[:TOP]


def profile_apps(server_app: Any, client_app: ClientApp, clients: int, rounds: int) -> dict[str, Any]:
    """Profiles of the second of two in-process runs of these apps (the first one fills
    the process's caches: data, partitions, model): server and client threads."""
    from benchmarks.overhead import quiet_flower_logs

    server, client = cProfile.Profile(), cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()), quiet_flower_logs():
        run_inprocess(server_app, client_app, clients)
        server.runcall(run_inprocess, server_app, profiled(client_app, client), clients)
    out: dict[str, Any] = {}
    for side, profiler in (("server", server), ("client", client)):
        out[f"{side}_tottime"] = _listing(profiler, rounds, None, "tottime")
        out[f"{side}_fedcomp_cumtime"] = _listing(profiler, rounds, "fedcomp/", "cumtime")
    return out


def profile_fedcomp(cfg: dict[str, Any]) -> dict[str, Any]:
    """fedcomp's apps and the plain Flower apps for ``cfg``, each profiled over one run."""
    from benchmarks.overhead import RoundClock, plain_flower_apps

    rounds, clients = int(cfg["federation"]["num_rounds"]), int(cfg["federation"]["num_clients"])
    return {
        "fedcomp": profile_apps(build_server_app(cfg), build_client_app(cfg), clients, rounds),
        "flower": profile_apps(*plain_flower_apps(cfg, RoundClock()), clients, rounds),
    }
