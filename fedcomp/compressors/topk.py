"""Top-k / threshold sparsification: send only the largest-magnitude entries.

Selection
---------
``density`` keeps a fraction of the entries with the largest ``|x|``; ``threshold``
keeps only entries with ``|x| >= threshold``. With both set, an entry is kept when it
is among the top ``density`` *and* at least ``threshold`` (the threshold drops small
values from the top-k set: "below the threshold -> communicated as zero").

``k = round(density * numel)`` (at least one). ``selection="exact"`` finds the k
largest with ``np.argpartition`` over every entry; ``selection="sampled"`` (default)
keeps the same k entries several times faster on large tensors, from a sampled cut
refined over the candidates it collects (:mod:`fedcomp.compressors.magnitude`).
Tensors not larger than ``sample_size`` always use the exact path. Exact zeros are
never sent (an all-zero tensor sends nothing), and a NaN or inf raises ``ValueError``
naming the tensor.

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

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, encode_floating, spec_from_meta
from fedcomp.compressors.magnitude import select
from fedcomp.compressors.payload import Budget

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
        ``"sampled"``: the k largest found from a sampled cut (fast on large tensors);
        ``"exact"``: the k largest via ``np.argpartition`` over every entry.
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
        sample_size = self.sample_size if self.selection == "sampled" else None
        if self.scope == "model":
            positions = select(flats, self.density, self.threshold, sample_size, rng)
        else:
            positions = {
                name: select({name: flat}, self.density, self.threshold, sample_size, rng)[name]
                for name, flat in flats.items()
            }

        def encode_one(name: str, array: np.ndarray) -> tuple[Tensors, dict[str, Any]]:
            if name in flats:
                enc, sparse = self._index_arrays(name, flats[name], positions[name])
                return {key[len(name) + 1 :]: value for key, value in sparse.items()}, {"enc": enc}
            if not np.isfinite(array).all():  # below min_numel: whole tensor, dense
                raise ValueError(f"topk {name!r}: the update holds NaN or inf; cannot send it")
            return {"values": array.reshape(-1).astype(np.float32)}, {"enc": "dense"}

        arrays, specs = encode_floating(tensors, encode_one)
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
        budget = Budget.of(encoded)
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
                shape, dtype = spec_from_meta(name, specs[name], "topk")
                budget.take("topk", name, math.prod(shape) * max(4, dtype.itemsize))
                out[name] = self._decode_one(name, specs[name], encoded.arrays)
        for name in specs:
            if name not in out:
                raise DecodeError(f"topk {name!r}: missing array '{name}/values'")
        return out
