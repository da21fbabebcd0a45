"""Which entries to keep: the k largest magnitudes, found exactly or from a sample.

Used by :class:`fedcomp.compressors.topk.TopK`. Positions are flat, sorted and int64.
Exact zeros are never kept (sending a zero costs bytes and changes nothing), and a
NaN or inf is refused: it can neither be ranked honestly nor left in an
error-feedback residual, where it would stay for good.

The sampled path keeps the same k entries as the exact one, several times faster on
large tensors. The ``(1 - d)`` quantile of ``sample_size`` magnitudes drawn with
replacement, lowered by :data:`BRACKET_Z` standard errors of a quantile estimate
(``sqrt(d (1 - d) / sample_size)``), gives a cut just below the k-th largest
magnitude; one ``|x| >= cut`` pass collects a few per cent more than k candidates,
and ``np.argpartition`` over the candidates alone keeps the k largest. When the cut
collects fewer than k (probability ~3e-5 at z = 4) the exact path runs instead.
"""

from __future__ import annotations

import math

import numpy as np

#: Standard errors by which the sampled cut sits below the k-th largest magnitude.
BRACKET_Z = 4.0


def at_least(mags: np.ndarray, cut: float) -> np.ndarray:
    """Positions of ``mags >= cut``; of ``mags > 0`` when the cut is 0."""
    return np.flatnonzero(mags >= cut if cut > 0 else mags > 0)


def k_largest(
    mags: dict[str, np.ndarray], pools: dict[str, np.ndarray] | None, k: int
) -> dict[str, np.ndarray]:
    """Positions, per tensor, of the ``k`` largest non-zero magnitudes over all tensors.

    Only the candidate positions ``pools`` compete (every position when ``None``).
    """
    parts = [m if pools is None else m[pools[name]] for name, m in mags.items()]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts)
    kth = float(np.partition(values, values.size - k)[values.size - k]) if 0 < k < values.size else 0.0
    keep = values > kth  # in position order: no index sort needed
    if kth > 0 and (short := k - int(np.count_nonzero(keep))):
        keep[np.flatnonzero(values == kth)[:short]] = True  # ties at the k-th: the first ones
    top = np.flatnonzero(keep)
    offsets = np.cumsum([0] + [p.size for p in parts])
    bounds = np.searchsorted(top, offsets)
    out = {}
    for i, name in enumerate(mags):
        local = top[bounds[i] : bounds[i + 1]] - offsets[i]
        out[name] = local if pools is None else pools[name][local]
    return out


def lower_cut(mags: dict[str, np.ndarray], k: int, sample_size: int, rng: np.random.Generator) -> float:
    """A magnitude just below the k-th largest over all tensors, from one sample."""
    total = sum(m.size for m in mags.values())
    draw = rng.integers(0, total, size=sample_size)
    if len(mags) == 1:
        sample = next(iter(mags.values()))[draw]
    else:  # one draw over the concatenation, read tensor by tensor
        draw.sort()
        offsets = np.cumsum([0] + [m.size for m in mags.values()])
        bounds = np.searchsorted(draw, offsets)
        sample = np.concatenate(
            [m[draw[bounds[i] : bounds[i + 1]] - offsets[i]] for i, m in enumerate(mags.values())]
        )
    d = k / total
    quantile = min(1.0, d + BRACKET_Z * math.sqrt(d * (1 - d) / sample_size))
    keep = min(sample_size, max(1, math.ceil(quantile * sample_size)))
    return float(np.partition(sample, sample_size - keep)[sample_size - keep])


def select(
    flats: dict[str, np.ndarray],
    density: float | None,
    threshold: float | None,
    sample_size: int | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Kept positions of each flat tensor, under one selection over all of ``flats``.

    Parameters
    ----------
    flats
        1-D floating arrays by name.
    density
        Keep ``k = round(density * total)`` (at least one) entries; ``None`` keeps every
        entry at or above ``threshold``.
    threshold
        Also drop kept entries below this magnitude (``None``: none).
    sample_size
        Find the k largest from a sample of this many magnitudes when there are more
        entries than that; ``None`` for the exact path.
    rng
        Where the sample is drawn from.

    Raises
    ------
    ValueError
        Naming the tensor, if it holds NaN or inf.
    """
    mags = {name: np.abs(flat) for name, flat in flats.items()}
    for name, m in mags.items():
        if m.size and not math.isfinite(float(m.max())):  # max propagates NaN
            raise ValueError(f"topk {name!r}: the update holds NaN or inf; cannot sparsify it")
    total = sum(m.size for m in mags.values())
    floor = threshold or 0.0
    if density is None or total == 0:
        return {name: at_least(m, floor) for name, m in mags.items()}
    k = min(total, max(1, round(density * total)))
    if sample_size is not None and total > sample_size:
        cut = max(lower_cut(mags, k, sample_size, rng), floor)
        pools = {name: at_least(m, cut) for name, m in mags.items()}
        if sum(p.size for p in pools.values()) >= k:  # the k largest are all candidates
            return k_largest(mags, pools, k)
        if cut == floor:  # fewer than k entries at or above the threshold (or non-zero)
            return pools
    top = k_largest(mags, None, k)  # exact, or a sampled cut that collected too few
    return {name: pos[mags[name][pos] >= floor] for name, pos in top.items()}
