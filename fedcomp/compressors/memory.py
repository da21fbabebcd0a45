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

from fedcomp.compressors.base import Compressor, Encoded, Tensors


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
        residual = residual or {}
        extra = sorted(set(residual) - set(update))
        if extra:
            raise ValueError(f"error feedback: residual has tensors the update lacks: {extra}")
        out: Tensors = {}
        for name, value in update.items():
            value = np.asarray(value, dtype=np.float32)
            kept = residual.get(name)
            if kept is None:
                out[name] = value.copy()
                continue
            if kept.shape != value.shape:
                raise ValueError(
                    f"error feedback {name!r}: residual shape {list(kept.shape)} != update "
                    f"shape {list(value.shape)}"
                )
            out[name] = value + kept.astype(np.float32, copy=False)
        return out

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
        extra = sorted(set(transmitted) - set(compensated))
        if extra:
            raise ValueError(f"error feedback: transmitted tensors not in the update: {extra}")
        out: Tensors = {}
        for name, value in compensated.items():
            value = np.asarray(value, dtype=np.float32)
            sent = transmitted.get(name)
            if sent is None:
                out[name] = value.copy()
                continue
            if sent.shape != value.shape:
                raise ValueError(
                    f"error feedback {name!r}: transmitted shape {list(sent.shape)} != "
                    f"update shape {list(value.shape)}"
                )
            out[name] = value - sent.astype(np.float32, copy=False)
        return out
