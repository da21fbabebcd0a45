"""How a compressor is applied to model traffic in both directions (numpy only).

Uplink (client -> server)
    The client sends ``encode(update)``, where ``update = trained − held`` over the
    tensors that are not frozen (``client.update=delta``, the default), or the trained
    weights themselves (``client.update=weights``; lossless compressors only). A
    non-finite update is refused with :class:`NonFiniteUpdate` naming the tensor, so it
    becomes a failed reply instead of vanishing into a residual. With error feedback the
    client first adds the residual it kept in its Flower Context state and keeps
    ``compensated − decode(encode(compensated))`` for the next round
    (:func:`encode_update`).

Downlink (server -> client)
    ``compressor.downlink=false`` (default): the global weights, uncompressed.
    ``compressor.downlink=true``: :class:`Broadcast`. Once per round the server encodes
    the change ``global − B`` of the global model against the broadcast model ``B``
    every up-to-date client holds, and advances ``B`` by what that encoding decodes to
    (server-side error feedback: what was not delivered stays in ``global − B`` and is
    sent later). Every up-to-date sampled client receives the same bytes. A client that
    missed rounds receives the missed rounds' own encoded changes, replayed in order
    (bit-identical to the server's ``B``), or the dense ``B`` when that is fewer bytes.
    The message names the version it starts from and the checksum of the target model;
    the client checks it, and reports the version and checksum it holds in its reply. The
    server advances its record of a client only on a matching report, so a client that
    crashed or never replied is caught up later, and one that cannot be (lost state) is
    re-synced with the dense model.

Frozen tensors are never sent: every process rebuilds them from the same round-0
model (seeded init or checkpoint).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, RoundInfo, Tensors
from fedcomp.compressors.memory import ErrorFeedback
from fedcomp.compressors.payload import decode_limit


class NonFiniteUpdate(ValueError):
    """An update holds NaN or inf: the client refuses to send it (a failed reply)."""


class OutOfSync(RuntimeError):
    """A client cannot reach the model the server says it should hold (it needs a re-sync)."""


@dataclass
class Channel:
    """A compressor plus how the federated layer applies it (``conf/compressor/*.yaml``).

    Attributes
    ----------
    compressor
        The (possibly chained) compressor encoding each update.
    error_feedback
        Keep what a lossy compressor dropped in the client's state and add it to the
        next round's update.
    downlink
        Also encode the server -> client model (see the module docstring).
    downlink_compressor
        What encodes the downlink when it differs from the uplink's compressor
        (``compressor.downlink_compressor``); ``None``: the same compressor both ways.
    """

    compressor: Compressor
    error_feedback: bool = False
    downlink: bool = False
    downlink_compressor: Compressor | None = None

    @property
    def down(self) -> Compressor:
        """The compressor of the downlink (used only when ``downlink`` is on)."""
        return self.downlink_compressor or self.compressor

    def label(self) -> str:
        """The compressor's label, with ``+EF`` and ``+down`` when those are on."""
        parts = [self.compressor.label()]
        if self.error_feedback:
            parts.append("EF")
        if self.downlink:
            parts.append(f"down {self.downlink_compressor.label()}" if self.downlink_compressor else "down")
        return " +".join(parts)

    def describe(self) -> dict[str, Any]:
        """What ``summary.json`` records about the compressor (read by the reports)."""
        return {
            "label": self.label(),
            "identity": self.compressor.is_identity,
            "lossy": self.compressor.lossy,
            "params": self.compressor.params(),
            "error_feedback": self.error_feedback,
            "downlink": self.downlink,
            "downlink_params": self.down.params() if self.downlink_compressor else None,
            "description": self.compressor.describe(),
        }


def subtract(a: Tensors, b: Tensors, names: list[str]) -> Tensors:
    """``a − b`` for ``names`` as float32."""
    return {n: np.subtract(a[n], b[n], dtype=np.float32) for n in names}


def add(base: Tensors, delta: Tensors) -> Tensors:
    """``base + delta`` for the names of ``delta``; other tensors of ``base`` kept."""
    out = dict(base)
    for name, value in delta.items():
        out[name] = np.add(base[name], value, dtype=np.float32)
    return out


def decode_checked(
    compressor: Compressor, encoded: Encoded, reference: Tensors, names: list[str]
) -> Tensors:
    """Decode and check the result is exactly ``names`` with ``reference``'s shapes.

    Raises
    ------
    DecodeError
        Naming the tensor on a missing/unexpected name, shape mismatch or non-finite value.
    """
    if encoded.limit is None:  # bound what a hostile header can make decoding allocate
        encoded = Encoded(arrays=encoded.arrays, meta=encoded.meta, limit=decode_limit(reference))
    try:
        decoded = compressor.decode(encoded)
    except DecodeError:
        raise
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise DecodeError(f"payload does not decode: {type(err).__name__}: {err}") from err
    frozen_fill = {n: v for n, v in decoded.items() if n not in names and n in reference}
    decoded = {n: v for n, v in decoded.items() if n not in frozen_fill}
    missing = [n for n in names if n not in decoded]
    unexpected = [n for n in decoded if n not in names]
    if missing or unexpected:
        raise DecodeError(f"tensor names differ: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name in names:
        value = decoded[name]
        if value.shape != reference[name].shape:
            raise DecodeError(
                f"tensor {name}: shape {value.shape} != expected {reference[name].shape}"
            )
        if not np.all(np.isfinite(value)):
            raise DecodeError(f"tensor {name}: non-finite values")
    return {n: decoded[n].astype(np.float32, copy=False) for n in names}


def check_finite(tensors: Tensors, what: str = "update") -> None:
    """Raise :class:`NonFiniteUpdate` naming the tensors that hold NaN or inf."""
    bad = [name for name, value in tensors.items() if not np.isfinite(value).all()]
    if bad:
        count = int(sum(np.size(tensors[n]) - np.isfinite(tensors[n]).sum() for n in bad))
        raise NonFiniteUpdate(f"{what} holds {count} NaN/inf values in {', '.join(bad[:5])}")


def encode_update(
    channel: Channel,
    update: Tensors,
    residual: Tensors | None,
    state: Tensors,
    rng: np.random.Generator,
    info: RoundInfo,
) -> tuple[Encoded, Tensors | None, Tensors]:
    """One client's uplink: check, compensate (error feedback), encode.

    Returns
    -------
    encoded, residual, state
        The payload, the residual to keep (``None`` without error feedback) and the
        compressor's own memory for the next round.
    """
    check_finite(update)
    if not channel.error_feedback:
        encoded, state = channel.compressor.encode_with_state(update, rng, state, info)
        return encoded, None, state
    compensated = ErrorFeedback.compensate(update, residual)
    encoded, state = channel.compressor.encode_with_state(compensated, rng, state, info)
    transmitted = channel.compressor.decode(encoded)
    return encoded, ErrorFeedback.residual(compensated, transmitted), state


def checksum(tensors: Tensors, names: list[str]) -> int:
    """CRC-32 of the tensors' bytes in ``names`` order: a short fingerprint of a model."""
    crc = 0
    for name in names:
        crc = zlib.crc32(np.ascontiguousarray(tensors[name]).data, crc)
    return crc


@dataclass
class CatchUp:
    """What one client is sent on a compressed downlink.

    Attributes
    ----------
    first_version
        The version the first change leads to (``deltas[i]`` leads to
        ``first_version + i``); for a dense re-sync, the version of ``dense``.
    target_version, target_checksum
        The broadcast version the client holds afterwards, and its checksum.
    deltas
        Encoded changes to apply in order (empty when the client is up to date).
    dense
        The whole broadcast model instead (a re-sync), or ``None``.
    """

    first_version: int
    target_version: int
    target_checksum: int
    deltas: list[Encoded] = field(default_factory=list)
    dense: Tensors | None = None


class Broadcast:
    """The server's side of a compressed downlink (see the module docstring).

    Parameters
    ----------
    compressor
        Encodes each round's change.
    initial
        The round-0 model every client builds itself (version 0).
    names
        The tensors that travel (not frozen), in model order.
    size_of
        Bytes one encoded change costs in the message layout in use; a client behind by
        changes that together cost at least the dense model gets the dense model.
    """

    def __init__(
        self, compressor: Compressor, initial: Tensors, names: list[str], size_of: Callable[[Encoded], int]
    ) -> None:
        self.compressor = compressor
        self.names = list(names)
        self.model: Tensors = {n: np.asarray(initial[n], dtype=np.float32).copy() for n in self.names}
        self.reference = {n: self.model[n] for n in self.names}
        self.size_of = size_of
        self.dense_size = int(sum(a.nbytes for a in self.model.values()))
        self.version = 0
        self.checksums = {0: checksum(self.model, self.names)}
        self.history: dict[int, tuple[Encoded, int]] = {}  # version -> (change, its size)
        self.state: Tensors = {}

    def advance(self, global_state: Tensors, rng: np.random.Generator, info: RoundInfo) -> None:
        """Encode ``global − B`` once; ``B`` moves by what the encoding decodes to."""
        change = subtract(global_state, self.model, self.names)
        check_finite(change, "global model change")
        encoded, self.state = self.compressor.encode_with_state(change, rng, self.state, info)
        decoded = decode_checked(self.compressor, encoded, self.reference, self.names)
        self.model = add(self.model, decoded)
        self.version += 1
        self.checksums[self.version] = checksum(self.model, self.names)
        self.history[self.version] = (encoded, self.size_of(encoded))
        self._forget()

    def catch_up(self, held_version: int | None) -> CatchUp:
        """What a client holding ``held_version`` (``None``: unknown) needs to reach ``B``."""
        target = (self.version, self.checksums[self.version])
        if held_version is not None and 0 <= held_version <= self.version:
            needed = range(held_version + 1, self.version + 1)
            if all(v in self.history for v in needed):
                cost = sum(self.history[v][1] for v in needed)
                if cost < self.dense_size or not needed:
                    deltas = [self.history[v][0] for v in needed]
                    return CatchUp(held_version + 1, *target, deltas=deltas)
        return CatchUp(self.version, *target, dense=dict(self.model))

    def confirms(self, version: int, reported_checksum: int) -> bool:
        """Whether a client's report matches the server's record of that version."""
        return self.checksums.get(version) == reported_checksum

    def _forget(self) -> None:
        """Drop changes no client would be sent (older ones cost more than the dense model)."""
        cost = 0
        for version in sorted(self.history, reverse=True):
            cost += self.history[version][1]
            if cost >= self.dense_size:
                for old in [v for v in self.history if v < version]:
                    del self.history[old]
                break


def apply_catch_up(
    compressor: Compressor,
    held: Tensors,
    held_version: int,
    message: CatchUp,
    reference: Tensors,
    names: list[str],
) -> tuple[Tensors, int]:
    """The client's side: the model and version after applying ``message``.

    Changes the client already applied (its reply was lost) are skipped.

    Raises
    ------
    OutOfSync
        When the client cannot reach the target: it lacks changes the message starts
        after, or the result's checksum differs.
    DecodeError
        When a change does not decode.
    """
    if message.dense is not None:
        model = {n: np.asarray(message.dense[n], dtype=np.float32) for n in names}
    else:
        if held_version + 1 < message.first_version:
            raise OutOfSync(
                f"holds version {held_version}, the downlink starts at {message.first_version}"
            )
        model = {n: held[n] for n in names}
        for offset, encoded in enumerate(message.deltas):
            if message.first_version + offset <= held_version:
                continue  # applied before; its reply did not reach the server
            model = add(model, decode_checked(compressor, encoded, reference, names))
    if checksum(model, names) != message.target_checksum:
        raise OutOfSync(f"checksum after version {message.target_version} differs from the server's")
    return model, message.target_version
