"""Error feedback: remember what a lossy compressor dropped and send it later.

EF-SGD / Deep Gradient Compression style memory, kept as a small object separate from
the compressors (as in GRACE). Each round a client

1. compensates its update with the residual it kept: ``c = update + residual``;
2. encodes ``c`` and sends it; ``t = decode(encode(c))`` is what the server gets;
3. keeps the new residual ``c - t`` for the next round.

So nothing is lost, only delayed: over rounds ``sum(t) + final residual ==
sum(update)`` (up to float32 rounding). The residual is a plain dict of float32
arrays so the client can keep it in its Flower ``Context`` state between rounds.
"""

from __future__ import annotations

import numpy as np

from fedcomp.compressors.base import Tensors


class ErrorFeedback:
    """Residual memory for a lossy compressor (stateless; the caller keeps the residual)."""

    @staticmethod
    def compensate(update: Tensors, residual: Tensors | None) -> Tensors:
        """Return ``update + residual`` as float32 (the update alone if no residual).

        Raises
        ------
        ValueError
            If the residual holds a name the update lacks, or a shape differs.
        """
        return _combine(update, residual or {}, subtract=False, role="residual")

    @staticmethod
    def residual(compensated: Tensors, transmitted: Tensors) -> Tensors:
        """Return ``compensated - transmitted`` as float32: what was not delivered.

        ``transmitted`` is what the receiver decodes; a name missing from it was not
        sent at all and its whole compensated value stays in the residual.

        Raises
        ------
        ValueError
            If ``transmitted`` holds a name ``compensated`` lacks, or a shape differs.
        """
        return _combine(compensated, transmitted, subtract=True, role="transmitted")


def _combine(values: Tensors, other: Tensors, subtract: bool, role: str) -> Tensors:
    """``values ± other`` per name as float32; a name ``other`` lacks is copied as it is."""
    extra = sorted(set(other) - set(values))
    if extra:
        raise ValueError(f"error feedback: {role} has tensors the update lacks: {extra}")
    out: Tensors = {}
    for name, value in values.items():
        value = np.asarray(value, dtype=np.float32)
        kept = other.get(name)
        if kept is None:
            out[name] = value.copy()
            continue
        if kept.shape != value.shape:
            raise ValueError(
                f"error feedback {name!r}: {role} shape {list(kept.shape)} != update shape {list(value.shape)}"
            )
        kept = kept.astype(np.float32, copy=False)
        out[name] = value - kept if subtract else value + kept
    return out
