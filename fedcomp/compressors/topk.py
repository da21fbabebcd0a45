"""Top-k / threshold sparsification: send only the largest-magnitude entries.

Selection
---------
``density`` keeps a fraction of the entries with the largest ``|x|``; ``threshold``
keeps only entries with ``|x| >= threshold``. With both set, an entry is kept when it
is among the top ``density`` *and* at least ``threshold`` (the threshold drops small
values from the top-k set: "below the threshold -> communicated as zero").

``selection="sampled"`` (default) is sorting-free: the magnitude cut is the
``(1 - density)`` quantile of ``sample_size`` entries drawn (with replacement) from
the passed ``rng``, then one ``|x| >= cut`` pass selects; the kept count deviates
from ``k`` by the sampling error (relative error about ``1/sqrt(density *
sample_size)``, ~3 % at the defaults). ``selection="exact"`` keeps exactly
``k = round(density * numel)`` entries (at least one) via ``np.argpartition``
(several times slower on large tensors). Tensors not larger than ``sample_size``
always use the exact path (it is cheap there). Exact zeros are never worth sending:
when the sampled cut is 0 the mask becomes ``x != 0``.

Wire format (per sparsified tensor ``name``)
-------------------------------------------
- ``name/values`` float32: kept values in increasing flat position.
- ``name/idx``: the positions, in one of
  ``int32`` (4 B per kept entry), ``bitmap`` (``np.packbits`` of the numel-long
  mask, ``ceil(numel/8)`` B) or ``delta`` (first differences of the sorted
  positions, the first one relative to 0, in the smallest of uint8/uint16/uint32
  that holds the largest gap). ``index_encoding="auto"`` picks the cheapest per
  tensor and also considers ``dense``: ``name/values`` is then the whole tensor with
  the dropped entries set to zero and there is no ``name/idx`` (cheaper only when
  density is close to 1). Tensors with fewer than ``min_numel`` elements are sent
  ``dense`` unsparsified.
- ``meta["tensors"][name] = {"enc": tag, "shape": [...], "dtype": "<f4"}``.

Arrays that are not floating point (e.g. indices from an earlier stage) pass through
unchanged under their own names.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from fedcomp.compressors.base import (
    Compressor,
    DecodeError,
    Encoded,
    Tensors,
    array_spec,
    spec_from_meta,
)

log = logging.getLogger(__name__)

SCOPES = ("tensor", "model")
SELECTIONS = ("sampled", "exact")
INDEX_ENCODINGS = ("auto", "int32", "bitmap", "delta", "dense")
_DELTA_DTYPES = (np.uint8, np.uint16, np.uint32)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _delta_dtype(max_gap: int) -> type[np.unsignedinteger]:
    for dtype in _DELTA_DTYPES:
        if max_gap <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"position gap {max_gap} does not fit uint32")  # numel >= 2**32


class TopK(Compressor):
    """Keep the largest-magnitude entries of each floating tensor; send values + positions.

    Parameters
    ----------
    density
        Fraction of entries kept, in (0, 1]; ``None`` to select by ``threshold`` only.
    threshold
        Minimum magnitude kept, >= 0; ``None`` for none. With ``density`` also set it
        further drops small values from the top-``density`` set.
    scope
        ``"tensor"``: one cut per tensor (every tensor keeps ~``density``);
        ``"model"``: one magnitude cut over all floating tensors together (layers with
        large updates keep more).
    selection
        ``"sampled"``: cut estimated from a random sample (fast, kept count ~k);
        ``"exact"``: exactly k entries via ``np.argpartition``.
    index_encoding
        ``"auto"`` (cheapest per tensor), or force ``"int32"``, ``"bitmap"``,
        ``"delta"`` or ``"dense"``.
    min_numel
        Tensors with fewer elements are sent dense and whole (e.g. ``100`` keeps
        biases and norms exact); 0 sparsifies everything.
    sample_size
        Number of magnitudes sampled for ``selection="sampled"``.
    """

    lossy = True

    def __init__(
        self,
        density: float | None = 0.01,
        threshold: float | None = None,
        scope: str = "tensor",
        selection: str = "sampled",
        index_encoding: str = "auto",
        min_numel: int = 0,
        sample_size: int = 100_000,
    ) -> None:
        if density is not None and (not _is_number(density) or not 0 < density <= 1):
            raise ValueError(f"compressor.density: must be in (0, 1] or null, got {density!r}")
        if threshold is not None and (
            not _is_number(threshold) or not math.isfinite(threshold) or threshold < 0
        ):
            raise ValueError(
                f"compressor.threshold: must be a finite number >= 0 or null, got {threshold!r}"
            )
        if density is None and threshold is None:
            raise ValueError(
                "compressor.density: density and threshold are both null; set at least one"
            )
        if scope not in SCOPES:
            raise ValueError(f"compressor.scope: must be one of {list(SCOPES)}, got {scope!r}")
        if selection not in SELECTIONS:
            raise ValueError(
                f"compressor.selection: must be one of {list(SELECTIONS)}, got {selection!r}"
            )
        if index_encoding not in INDEX_ENCODINGS:
            raise ValueError(
                f"compressor.index_encoding: must be one of {list(INDEX_ENCODINGS)}, "
                f"got {index_encoding!r}"
            )
        if isinstance(min_numel, bool) or not isinstance(min_numel, int) or min_numel < 0:
            raise ValueError(f"compressor.min_numel: must be an int >= 0, got {min_numel!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"compressor.sample_size: must be an int >= 1, got {sample_size!r}")
        self.density = None if density is None else float(density)
        self.threshold = None if threshold is None else float(threshold)
        self.scope = scope
        self.selection = selection
        self.index_encoding = index_encoding
        self.min_numel = min_numel
        self.sample_size = sample_size

    def label(self) -> str:
        parts = []
        if self.density is not None:
            parts.append(f"top-k {self.density * 100:g}%")
        if self.threshold is not None:
            parts.append(f"|x|>={self.threshold:g}")
        if self.scope == "model":
            parts.append("model")
        return " ".join(parts)

    # ------------------------------------------------------------------ selection
    def _k(self, numel: int) -> int:
        """Entries kept out of ``numel`` at ``density`` (at least one)."""
        return min(numel, max(1, round((self.density or 1.0) * numel)))

    def _positions_exact(self, mags: np.ndarray, k: int) -> np.ndarray:
        """Sorted flat positions of the ``k`` largest magnitudes (int64)."""
        if k >= mags.size:
            return np.arange(mags.size, dtype=np.int64)
        top = np.argpartition(mags, mags.size - k)[mags.size - k :]
        top.sort()
        return top

    def _apply_threshold(self, flat: np.ndarray, positions: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            return positions
        return positions[np.abs(flat[positions]) >= self.threshold]

    def _mask_positions(self, flat: np.ndarray, cut: float) -> np.ndarray:
        """Sorted positions of ``|x| >= cut`` (``x != 0`` when the cut is 0)."""
        mags = np.abs(flat)
        mask = mags >= cut if cut > 0 else mags > 0
        return np.flatnonzero(mask)

    def _sampled_cut(self, mags_sample: np.ndarray) -> float:
        """Magnitude of the ``density``-top entries of a sample."""
        s = mags_sample.size
        keep = self._k(s)
        return float(np.partition(mags_sample, s - keep)[s - keep])

    def _select_tensor(self, flat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Kept positions for one tensor (scope="tensor")."""
        n = flat.size
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if self.density is None:
            return self._mask_positions(flat, self.threshold or 0.0)
        if self.selection == "exact" or n <= self.sample_size:
            return self._apply_threshold(flat, self._positions_exact(np.abs(flat), self._k(n)))
        sample = np.abs(flat[rng.integers(0, n, size=self.sample_size)])
        cut = self._sampled_cut(sample)
        if not math.isfinite(cut):  # NaN/inf in the update: fall back to the honest path
            return self._apply_threshold(flat, self._positions_exact(np.abs(flat), self._k(n)))
        return self._mask_positions(flat, max(cut, self.threshold or 0.0))

    def _select_model(
        self, flats: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Kept positions for all tensors under one global magnitude cut."""
        sizes = np.array([f.size for f in flats.values()], dtype=np.int64)
        total = int(sizes.sum())
        if total == 0:
            return {name: np.empty(0, dtype=np.int64) for name in flats}
        if self.density is None:
            cut = self.threshold or 0.0
            return {name: self._mask_positions(f, cut) for name, f in flats.items()}
        names = list(flats)
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        if self.selection == "sampled" and total > self.sample_size:
            draw = np.sort(rng.integers(0, total, size=self.sample_size))
            bounds = np.searchsorted(draw, offsets)
            sample = np.concatenate(
                [
                    np.abs(flats[n][draw[bounds[i] : bounds[i + 1]] - offsets[i]])
                    for i, n in enumerate(names)
                ]
            )
            cut = self._sampled_cut(sample)
            if math.isfinite(cut):
                cut = max(cut, self.threshold or 0.0)
                return {name: self._mask_positions(f, cut) for name, f in flats.items()}
        mags = np.concatenate([np.abs(f) for f in flats.values()])
        top = self._positions_exact(mags, self._k(total))
        bounds = np.searchsorted(top, offsets)
        return {
            name: self._apply_threshold(flats[name], top[bounds[i] : bounds[i + 1]] - offsets[i])
            for i, name in enumerate(names)
        }

    # ------------------------------------------------------------------ encoding
    def _index_arrays(
        self, name: str, flat: np.ndarray, positions: np.ndarray
    ) -> tuple[str, Tensors]:
        """Pick the index encoding and build ``name/values`` (+ ``name/idx``)."""
        n, k = flat.size, positions.size
        candidates = (
            ("int32", "bitmap", "delta", "dense")
            if self.index_encoding == "auto"
            else (self.index_encoding,)
        )
        gaps = None
        sizes: dict[str, int] = {}
        for enc in candidates:
            if enc == "int32":
                if n > np.iinfo(np.int32).max + 1:
                    continue
                sizes[enc] = 4 * k + 4 * k
            elif enc == "bitmap":
                sizes[enc] = 4 * k + (n + 7) // 8
            elif enc == "delta":
                gaps = np.diff(positions, prepend=0) if gaps is None else gaps
                max_gap = int(gaps.max()) if k else 0
                sizes[enc] = 4 * k + k * np.dtype(_delta_dtype(max_gap)).itemsize
            else:
                sizes[enc] = 4 * n
        if not sizes:
            raise ValueError(f"topk {name!r}: {n} elements do not fit int32 positions")
        enc = min(sizes, key=sizes.__getitem__)  # ties: first in candidate order
        values = flat[positions].astype(np.float32, copy=False)
        if enc == "dense":
            dense = np.zeros(n, dtype=np.float32)
            dense[positions] = values
            arrays = {f"{name}/values": dense}
        elif enc == "int32":
            arrays = {f"{name}/values": values, f"{name}/idx": positions.astype(np.int32)}
        elif enc == "bitmap":
            mask = np.zeros(n, dtype=bool)
            mask[positions] = True
            arrays = {f"{name}/values": values, f"{name}/idx": np.packbits(mask)}
        else:
            gaps = np.diff(positions, prepend=0) if gaps is None else gaps
            dtype = _delta_dtype(int(gaps.max()) if k else 0)
            arrays = {f"{name}/values": values, f"{name}/idx": gaps.astype(dtype)}
        log.debug(
            "topk %s: kept %d of %d (%.4f), index_encoding=%s, %d B (candidates %s)",
            name, k, n, k / n if n else 0.0, enc, sizes[enc], sizes,
        )
        return enc, arrays

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        flats: dict[str, np.ndarray] = {}
        for name, array in tensors.items():
            if np.issubdtype(array.dtype, np.floating) and array.size >= self.min_numel:
                flats[name] = array.reshape(-1)
        if self.scope == "model":
            positions = self._select_model(flats, rng)
        else:
            positions = {name: self._select_tensor(flat, rng) for name, flat in flats.items()}

        arrays: Tensors = {}
        specs: dict[str, Any] = {}
        for name, array in tensors.items():
            if not np.issubdtype(array.dtype, np.floating):
                arrays[name] = array  # e.g. indices of an earlier stage
                continue
            spec = array_spec(array)
            if name in flats:
                spec["enc"], sparse = self._index_arrays(name, flats[name], positions[name])
                arrays.update(sparse)
            else:  # below min_numel: whole tensor, dense
                spec["enc"] = "dense"
                arrays[f"{name}/values"] = array.reshape(-1).astype(np.float32)
            specs[name] = spec
        return Encoded(arrays=arrays, meta={"tensors": specs})

    # ------------------------------------------------------------------ decoding
    @staticmethod
    def _decode_one(name: str, entry: Any, arrays: Tensors) -> np.ndarray:
        shape, dtype = spec_from_meta(name, entry, "topk")
        n = math.prod(shape)
        enc = entry.get("enc")
        values = arrays.get(f"{name}/values")
        if values is None:
            raise DecodeError(f"topk {name!r}: missing array '{name}/values'")
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.floating):
            raise DecodeError(
                f"topk {name!r}: values must be a 1-D float array, "
                f"got {values.dtype}{list(values.shape)}"
            )
        if enc == "dense":
            if values.size != n:
                raise DecodeError(
                    f"topk {name!r}: dense values have {values.size} entries, "
                    f"shape {list(shape)} needs {n}"
                )
            return values.astype(dtype).reshape(shape)
        if enc not in ("int32", "bitmap", "delta"):
            raise DecodeError(f"topk {name!r}: unknown index encoding {enc!r}")
        idx = arrays.get(f"{name}/idx")
        if idx is None:
            raise DecodeError(f"topk {name!r}: missing array '{name}/idx'")
        if idx.ndim != 1:
            raise DecodeError(
                f"topk {name!r}: index array must be 1-D, got shape {list(idx.shape)}"
            )
        out = np.zeros(n, dtype=dtype)
        if enc == "bitmap":
            if idx.dtype != np.uint8 or idx.size != (n + 7) // 8:
                raise DecodeError(
                    f"topk {name!r}: bitmap has {idx.size} {idx.dtype} bytes, "
                    f"numel {n} needs {(n + 7) // 8} uint8"
                )
            mask = np.unpackbits(idx, count=n).view(bool)
            kept = int(np.count_nonzero(mask))
            if kept != values.size:
                raise DecodeError(
                    f"topk {name!r}: bitmap marks {kept} entries but {values.size} values were sent"
                )
            out[mask] = values
            return out.reshape(shape)
        if idx.size != values.size:
            raise DecodeError(f"topk {name!r}: {idx.size} positions but {values.size} values")
        if enc == "int32":
            if idx.dtype != np.int32:
                raise DecodeError(f"topk {name!r}: int32 index array has dtype {idx.dtype}")
            positions = idx
        else:
            if idx.dtype not in _DELTA_DTYPES:
                raise DecodeError(
                    f"topk {name!r}: delta index array has dtype {idx.dtype}, "
                    "expected uint8/16/32"
                )
            if idx.size > 1 and not idx[1:].all():
                raise DecodeError(f"topk {name!r}: delta positions are not strictly increasing")
            positions = np.cumsum(idx, dtype=np.int64)
        if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= n):
            raise DecodeError(f"topk {name!r}: positions outside [0, {n}) for shape {list(shape)}")
        out[positions] = values
        return out.reshape(shape)

    def decode(self, encoded: Encoded) -> Tensors:
        specs = encoded.meta.get("tensors")
        if not isinstance(specs, dict):
            raise DecodeError("topk: meta has no 'tensors' dict")
        owner = {}
        for name in specs:
            owner[f"{name}/values"] = name
            owner[f"{name}/idx"] = name
        out: Tensors = {}
        for key, array in encoded.arrays.items():
            name = owner.get(key)
            if name is None:
                out[key] = array  # passed through at encode time
            elif name not in out:
                out[name] = self._decode_one(name, specs[name], encoded.arrays)
        for name in specs:
            if name not in out:
                raise DecodeError(f"topk {name!r}: missing array '{name}/values'")
        return out
