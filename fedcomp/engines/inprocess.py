"""An in-process simulation engine for sweeps of small runs: Flower's apps, no Ray.

Flower 1.42's Simulation Engine (``flwr.simulation.run_simulation``) starts Ray, builds
an actor pool and tears both down for every run: 13-15 s here, for rounds that take
milliseconds on a small task. This engine runs the same ``ServerApp`` and ``ClientApp``
through the same Flower pieces, in this process:

- Flower's ``InMemoryLinkState`` holds the run, the registered nodes and every message
  (it validates them, assigns ``delivered_at``, enforces the TTL of replies);
- a subclass of Flower's ``InMemoryGrid`` is what the ServerApp talks to (node ids,
  ``push_messages``, ``pull_messages``, ``send_and_receive``);
- each node keeps its ``Context`` (``partition-id``, ``num-partitions``, ``state``) in
  Flower's ``DeprecatedRunInfoStore``, registered exactly as the Simulation Engine does
  (by ``vce_api._register_nodes`` and ``_register_node_info_stores``: private to
  Flower, which pyproject pins to 1.42);
- :class:`InProcessBackend` is a Flower simulation ``Backend`` that runs the ClientApp on
  copies of the message and the node's Context (as Ray's actors get pickled copies), so
  a ClientApp that raises leaves its node's Context untouched and becomes an error reply
  with the error code Flower's engine uses.

What differs from the Ray engine: ClientApps run one at a time on one worker thread
(fedcomp's ClientApp seeds torch's process-wide RNG and sets its thread count, so
concurrent ClientApps in one process would not reproduce the Ray engine's results);
and the grid wakes up when a reply is stored instead of polling the LinkState every
0.1 s, and stops at once instead of waiting out Flower's 1 s queue timeouts. Use
``engine=simulation`` (Ray) for parallel clients, GPUs or a cluster
(``engine.ray_address``).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast
from uuid import uuid4

import torch
from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.app.user_config import UserConfig
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException, LoadClientAppError
from flwr.common.constant import RUN_ID_NUM_BYTES, SUPERLINK_NODE_ID, TASK_ID_NUM_BYTES, ErrorCode
from flwr.proto.task_pb2 import Task  # pylint: disable=no-name-in-module
from flwr.server.run_serverapp import run as run_serverapp
from flwr.server.superlink.fleet.vce.backend import Backend, BackendConfig
from flwr.server.superlink.fleet.vce.vce_api import _register_node_info_stores, _register_nodes
from flwr.server.superlink.linkstate import InMemoryLinkState, LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
from flwr.serverapp import ServerApp
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from fedcomp.core.env import quiet_environment
from fedcomp.flower.client_app import build_client_app
from fedcomp.flower.server_app import build_server_app

log = logging.getLogger(__name__)

#: The id Flower's Simulation Engine gives the ServerApp's own task.
SERVER_TASK_ID = 1


class InProcessBackend(Backend):
    """A Flower simulation ``Backend`` that runs the ClientApp in this process.

    ``process_message`` works on deep copies of the message and the Context and
    returns the updated Context copy, as ``RayBackend`` gets them back from an actor.
    A ClientApp's exception is re-raised as Flower's ``ClientAppException`` (what
    Flower's ``ClientAppActor`` raises). torch's thread count, which a ClientApp may
    set process-wide (fedcomp's sets 1, as in a one-CPU Ray actor), is restored after
    each call so the ServerApp's own work (central evaluation) runs as under Ray.
    """

    def __init__(self, backend_config: BackendConfig | None = None) -> None:
        super().__init__(backend_config or {})
        self._app: ClientApp | None = None

    def build(self, app_fn: Callable[[], ClientApp]) -> None:
        self._app = app_fn()

    @property
    def num_workers(self) -> int:
        return 1

    def is_worker_idle(self) -> bool:
        return self._app is not None

    def process_message(self, message: Message, context: Context) -> tuple[Message, Context]:
        if self._app is None:
            raise LoadClientAppError("build() the backend before processing messages")
        message, context = delivered(message), copy.deepcopy(context)
        threads = torch.get_num_threads()
        try:
            reply = self._app(message=message, context=context)
        except Exception as ex:  # as flwr.simulation.ray_transport.ray_actor.ClientAppActor
            raise ClientAppException(str(ex)) from ex
        finally:
            torch.set_num_threads(threads)
        return reply, context

    def terminate(self) -> None:
        self._app = None


def delivered(message: Message) -> Message:
    """An independent copy of ``message`` as a SuperNode receives it.

    Its content is deflated into Flower's objects and inflated again (what travels in a
    deployment); its metadata is copied. ``copy.deepcopy`` cannot copy a message whose
    arrays Flower has already split into chunks (memoryviews), e.g. once measured.
    """
    if not message.has_content():
        return copy.deepcopy(message)
    content = message.content
    objects = get_all_nested_objects(content)
    contents = {object_id: obj.deflate() for object_id, obj in objects.items()}
    copied = inflate_object_from_contents(content.object_id, contents, keep_object_contents=False)
    return Message(metadata=copy.deepcopy(message.metadata), content=copied)


class InProcessGrid(InMemoryGrid):
    """Flower's ``InMemoryGrid`` that hands each pushed message to the backend at once.

    A message the ServerApp pushes is stored in the LinkState (Flower's checks), taken
    out again as delivered, and processed on the worker thread; the reply is stored in
    the LinkState, where ``pull_messages`` finds it. ``send_and_receive`` waits for the
    replies (or the timeout) instead of sleeping between pulls.
    """

    def __init__(
        self,
        state_factory: LinkStateFactory,
        backend: Backend,
        node_info_stores: dict[int, Any],
    ) -> None:
        super().__init__(state_factory)
        self._backend = backend
        self._node_info_stores = node_info_stores
        self._replied = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=backend.num_workers, thread_name_prefix="clientapp")

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        ids = list(super().push_messages(messages))
        for node_id in sorted({m.metadata.dst_node_id for m in messages}):
            for message in self.state.get_message_ins(node_id=node_id, limit=None):
                self._pool.submit(self._process, message)
        return ids

    def _process(self, message: Message) -> None:
        """Run one message through the backend; store its reply (an error reply on failure)."""
        node_id = message.metadata.dst_node_id
        run_id = message.metadata.run_id
        try:
            store = self._node_info_stores[node_id]
            reply, context = self._backend.process_message(message, store.retrieve_context(run_id=run_id))
            store.update_context(run_id, context=context)
        except Exception as ex:  # noqa: BLE001 - any failure becomes an error reply, as in Flower
            # as flwr.server.superlink.fleet.vce.vce_api.worker: an error reply, never a crash
            # run.log only: the strategy prints the one-line failure ("round r: client c failed")
            log.error("%s\n%s", ex, traceback.format_exc(), extra={"console": False})
            if isinstance(ex, ClientAppException):
                code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            elif isinstance(ex, LoadClientAppError):
                code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
            else:
                code = ErrorCode.UNKNOWN
            reply = Message(Error(code=code, reason=f"{type(ex)}:<'{ex}'>"), reply_to=message)
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        self.state.store_message_res(reply)
        with self._replied:
            self._replied.notify_all()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        with self._replied:
            while pending:
                got = list(self.pull_messages(pending))
                replies.extend(got)
                pending.difference_update(m.metadata.reply_to_message_id for m in got)
                left = None if deadline is None else deadline - time.monotonic()
                if not pending or (left is not None and left <= 0):
                    break
                self._replied.wait(left)
        return replies

    def shutdown(self) -> None:
        """Wait for the worker to finish what it was given; stop it."""
        self._pool.shutdown(wait=True)


def new_run() -> tuple[Run, LinkStateFactory]:
    """A run registered in a fresh in-memory LinkState, as ``run_simulation`` makes one."""
    run = Run.create_empty(run_id=generate_rand_int_from_bytes(RUN_ID_NUM_BYTES))
    run.primary_task_id = generate_rand_int_from_bytes(TASK_ID_NUM_BYTES)
    run.federation_id = NOOP_FEDERATION_ID
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    state = cast(InMemoryLinkState, factory.state())
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[run.primary_task_id] = Task(task_id=run.primary_task_id, run_id=run.run_id)
    # the identity Flower's Simulation Engine gives the ServerApp (messages carry it)
    TaskIdentity.task_id, TaskIdentity.run_id = SERVER_TASK_ID, run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    return run, factory


def run_inprocess(server_app: ServerApp, client_app: ClientApp, num_supernodes: int) -> Context:
    """Run ``server_app`` against ``num_supernodes`` nodes running ``client_app``, in-process.

    Returns the ServerApp's Context; an exception of the ServerApp propagates.
    """
    run, factory = new_run()
    nodes = _register_nodes(num_nodes=num_supernodes, state_factory=factory)
    backend = InProcessBackend()
    backend.build(lambda: client_app)
    grid = InProcessGrid(factory, backend, _register_node_info_stores(nodes, run, app_dir=None))
    grid.set_run(run)
    context = Context(run_id=run.run_id, node_id=0, node_config=UserConfig(), state=RecordDict(),
                      run_config=UserConfig())
    try:
        return run_serverapp(grid=grid, context=context, server_app_dir="", loaded_server_app=server_app)
    finally:
        grid.shutdown()
        backend.terminate()


def simulate_inprocess(cfg: dict[str, Any], verbose: bool = False) -> None:
    """Run one fedcomp experiment on the in-process engine; the ServerApp writes the run directory."""
    quiet_environment()
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    try:
        run_inprocess(build_server_app(cfg), build_client_app(cfg), int(cfg["federation"]["num_clients"]))
    finally:
        flwr_logger.setLevel(previous)
