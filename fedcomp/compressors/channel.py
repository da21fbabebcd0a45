"""Encoding and decoding model traffic in both directions, and the state each side keeps.

Uplink (client -> server), always
    The client sends ``encode(update)``, where ``update = trained − received`` over the
    tensors that are not frozen (``client.update=delta``, the default), or the trained
    weights themselves (``client.update=weights``, Flower's classic FedAvg message).
    With error feedback the client first adds the residual it kept in its Flower
    Context state and keeps ``compensated − decode(encode(compensated))`` for the next
    round.

Downlink (server -> client)
    Identity (default): the global weights of the non-frozen tensors.
    ``compressor.downlink=true``: the server sends ``encode(global − held)``, where
    ``held`` is the model that client decoded last time (the round-0 model the first
    time). The client adds the decoded delta to the ``held`` model it keeps in its
    Context state; the server keeps an identical mirror per partition, so both sides
    agree on what the client holds and downlink errors never accumulate.

Frozen tensors are never sent: every process rebuilds them from the same round-0
model (seeded init or checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors


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
    """

    compressor: Compressor
    error_feedback: bool = False
    downlink: bool = False

    def label(self) -> str:
        """The compressor's label, with ``+EF`` and ``+down`` when those are on."""
        parts = [self.compressor.label()]
        if self.error_feedback:
            parts.append("EF")
        if self.downlink:
            parts.append("down")
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
