"""The server's model messages: the global model, or a compressed downlink every client can follow.

``compressor.downlink=false``: every sampled client gets the same message, the global
weights of the tensors that travel (packed as one raw byte string).

``compressor.downlink=true``: a :class:`~fedcomp.compressors.channel.Broadcast` encodes
each new global model's change once; clients that hold the previous broadcast model get
the same shared message, others their catch-up or a dense re-sync. The server's record
of what each client holds advances only when the client reports the matching version and
checksum (see :mod:`fedcomp.compressors.channel`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from flwr.app import RecordDict

from fedcomp.compressors.base import Encoded, RoundInfo, Tensors
from fedcomp.compressors.channel import Broadcast, CatchUp
from fedcomp.compressors.packing import pack
from fedcomp.core.seeds import derive_seed
from fedcomp.flower import protocol
from fedcomp.flower.setup import Setup

#: Kinds of model message, as the ledger's ``kind`` column names them: the global weights;
#: nothing new (the client holds the current broadcast); one change; several; dense re-sync.
MODEL, CURRENT, DELTA, CATCH_UP, RESYNC = "model", "current", "delta", "catch-up", "resync"


class Downlink:
    """Builds each client's model message and keeps the server's record of what it holds."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.names = setup.sent_names
        self.broadcast: Broadcast | None = None
        if setup.channel.downlink:
            self.broadcast = Broadcast(setup.channel.down, setup.initial_state, self.names, self._size)
        self.held: dict[int, int | None] = {}  # partition -> broadcast version (None: unknown)
        self.counts: Counter[str] = Counter()
        self._generation = -1
        self._shared: dict[tuple, RecordDict] = {}
        self._global: Tensors = {}

    def _size(self, encoded: Encoded) -> int:
        if self.setup.layout == "packed":
            return len(pack(encoded, self.setup.spec))
        return encoded.payload_bytes

    def start(self, global_state: Tensors, generation: int, server_round: int) -> None:
        """Called before a round's messages; ``generation`` counts global model updates."""
        if generation == self._generation:
            return
        self._generation = generation
        self._shared = {}
        if self.broadcast is not None:
            if generation == 0:
                return  # the global model is still the round-0 model every client built
            rng = np.random.default_rng(derive_seed(self.setup.seed, server_round, generation, 4))
            info = RoundInfo(server_round, self.setup.num_rounds, -1)
            self.broadcast.advance(global_state, rng, info)
        else:
            self._global = {n: global_state[n] for n in self.names}

    def content(self, partition: int) -> tuple[RecordDict, str]:
        """The records for ``partition`` and the message's kind (shared when identical)."""
        if self.broadcast is None:
            key: tuple = ("model",)
            if key not in self._shared:
                self._shared[key] = self._records([Encoded(self._global, {})], {})
            return self._shared[key], MODEL
        catch_up = self.broadcast.catch_up(self.held.get(partition, 0))
        count = len(catch_up.deltas)
        kind = RESYNC if catch_up.dense is not None else CURRENT if count == 0 else DELTA if count == 1 else CATCH_UP
        self.counts[kind] += 1
        key = (catch_up.first_version, catch_up.dense is not None)
        if key not in self._shared:
            self._shared[key] = self._catch_up_records(catch_up)
        return self._shared[key], kind

    def _catch_up_records(self, catch_up: CatchUp) -> RecordDict:
        fields = {"v": catch_up.first_version, "t": catch_up.target_version, "h": catch_up.target_checksum}
        if catch_up.dense is not None:
            return self._records([Encoded(catch_up.dense, {})], {**fields, "d": True})
        return self._records(catch_up.deltas, fields)

    def _records(self, payloads: list[Encoded], fields: dict) -> RecordDict:
        return protocol.to_content(payloads, fields, self.setup.layout, self.setup.spec)

    def report(self, partition: int, fields: dict) -> str | None:
        """Take a reply's report of what the client holds; a reason string on mismatch."""
        if self.broadcast is None or "v" not in fields:
            return None
        version, reported = int(fields["v"]), int(fields.get("h", -1))
        if self.broadcast.confirms(version, reported):
            self.held[partition] = version
            return None
        self.held[partition] = None  # re-sync next time
        self.counts["mismatch"] += 1
        return f"holds version {version} with a checksum the server does not know: re-sync"

    def lost(self, partition: int, reason: str) -> None:
        """A failed reply; a client that said it is out of sync gets the dense model next."""
        if self.broadcast is not None and "OutOfSync" in reason:
            self.held[partition] = None
            self.counts["out_of_sync"] += 1

    def summary(self) -> dict:
        """What ``summary.json`` records about the downlink."""
        if self.broadcast is None:
            return {"compressed": False}
        return {"compressed": True, "versions": self.broadcast.version, **dict(sorted(self.counts.items()))}
