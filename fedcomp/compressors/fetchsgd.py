"""FetchSGD (Rothchild et al. 2020): clients send count sketches; the server keeps the rest.

The floating tensors of an update, concatenated in order, form one vector ``g`` of ``d``
entries. A client sends its count sketch ``S(g)``: ``rows × cols`` float32 counters
(``cols = max(1, round(sketch_density · d))``), where row ``j`` adds ``s_j(i) · g_i``
to counter ``h_j(i)``. The hashes ``h_j`` (bucket) and ``s_j`` (±1) are SplitMix64
mixes of the index, seeded by ``hash_seed``: every client and the server use the same
ones, so sketches add up (the sketch is linear). The payload is ``fetchsgd/sketch``,
``4 · rows · cols`` bytes whatever the model.

The server (:meth:`aggregate`) follows the paper's Algorithm 1 with learning rate 1
(the server optimizer scales the result):

    S   = Σ_i w_i S_i                      (sum of the clients' sketches)
    S_u = ρ S_u + S                        (momentum, in sketch space)
    S_e = S_e + S_u                        (error accumulation, in sketch space)
    Δ   = top-k(unsketch(S_e))             (k = max(1, round(density · d)))
    S_u, S_e zeroed at the counters of Δ's entries (the non-zeros of S(Δ))

and returns ``Δ`` as the update. (The zeroing of ``S_e``, rather than subtracting
``S(Δ)``, is what the authors' code does: it notes that subtracting diverges.)
``unsketch`` estimates each entry as the median over rows of ``s_j(i) · S[j, h_j(i)]``. Decoding a single payload (``decode``) is
``top-k(unsketch(S))``. A count sketch recovers entries much larger than the rest (the
"heavy hitters"); it needs ``cols >= k``, so ``sketch_density >= density`` (the
authors use about ten columns per recovered entry, the defaults here too).

Momentum ``ρ`` defaults to 0: the paper's 0.9 assumes one local step per round; on
fedcomp's updates (whole local epochs, already with client momentum) it overshoots
(digits, 5 rounds, a full-size sketch, ``density=0.01``: 41 % with 0.9, 63 % with 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, array_spec
from fedcomp.compressors.payload import Budget, finite_scalars, float_spec, part, tensor_specs
from fedcomp.compressors.settings import integer, number

SKETCH = "fetchsgd/sketch"
_CHUNK = 1 << 13
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finalizer (uint64, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class CountSketch:
    """A ``rows × cols`` count sketch of ``d``-long vectors with seeded hashes."""

    def __init__(self, rows: int, cols: int, seed: int) -> None:
        self.rows, self.cols = rows, cols
        salts = splitmix64(np.arange(rows, dtype=np.uint64) + np.uint64(seed) * np.uint64(rows))
        self._salts = salts

    def hashes(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Buckets (rows × n, intp) and signs (rows × n, float32) of entry indices."""
        z = splitmix64(index.astype(np.uint64)[None, :] ^ self._salts[:, None])
        buckets = (z % np.uint64(self.cols)).astype(np.intp)
        signs = 1 - 2 * (z >> np.uint64(63)).astype(np.float32)
        return buckets, signs

    def sketch(self, vector: np.ndarray) -> np.ndarray:
        """The ``rows × cols`` float32 sketch of ``vector``."""
        table = np.zeros((self.rows, self.cols), dtype=np.float64)
        for start in range(0, vector.size, _CHUNK):
            chunk = vector[start : start + _CHUNK].astype(np.float64)
            buckets, signs = self.hashes(np.arange(start, start + chunk.size))
            for j in range(self.rows):
                table[j] += np.bincount(buckets[j], weights=signs[j] * chunk, minlength=self.cols)
        return table.astype(np.float32)

    def top_k(self, table: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (sorted) and estimates of the ``k`` largest estimated entries of ``d``."""
        best_pos = np.empty(0, dtype=np.int64)
        best_val = np.empty(0, dtype=np.float32)
        rows = np.arange(self.rows)[:, None]
        for start in range(0, d, _CHUNK):
            stop = min(d, start + _CHUNK)
            buckets, signs = self.hashes(np.arange(start, stop))
            estimate = np.median(signs * table[rows, buckets], axis=0).astype(np.float32)
            pos = np.concatenate((best_pos, np.arange(start, stop)))
            val = np.concatenate((best_val, estimate))
            if val.size > k:
                keep = np.argpartition(np.abs(val), val.size - k)[val.size - k :]
                pos, val = pos[keep], val[keep]
            best_pos, best_val = pos, val
        order = np.argsort(best_pos)
        return best_pos[order], best_val[order]


class FetchSGD(Compressor):
    """FetchSGD (see the module docstring).

    Parameters
    ----------
    rows
        Sketch rows (independent hashes), >= 1.
    sketch_density
        Columns per row as a fraction of the model's entries, in (0, 1].
    density
        ``k / d``: the fraction of entries the server recovers each round, in
        (0, ``sketch_density``].
    momentum
        ``ρ``, the server's momentum in sketch space, in [0, 1).
    hash_seed
        Seed of the shared hashes, >= 0.
    """

    lossy = True

    def __init__(
        self,
        rows: int = 5,
        sketch_density: float = 0.02,
        density: float = 0.002,
        momentum: float = 0.0,
        hash_seed: int = 0,
    ) -> None:
        self.rows = integer("rows", rows, 1)
        self.sketch_density = number("sketch_density", sketch_density, 0, 1, low_open=True)
        self.density = number("density", density, 0, 1, low_open=True)
        if self.density > self.sketch_density:
            raise ValueError(
                f"compressor.sketch_density: the sketch ({sketch_density} of the entries per "
                f"row) is smaller than k (compressor.density={density}); a count sketch "
                "recovers at most about as many entries as it has columns"
            )
        self.momentum = number("momentum", momentum, 0, 1)
        if self.momentum >= 1:
            raise ValueError(f"compressor.momentum: must be in [0, 1), got {momentum!r}")
        self.hash_seed = integer("hash_seed", hash_seed, 0, (1 << 63) - 1)

    def label(self) -> str:
        return f"FetchSGD {self.rows}x{self.sketch_density * 100:g}%"

    def _cols(self, d: int) -> int:
        return max(1, round(self.sketch_density * d))

    def _k(self, d: int) -> int:
        return min(d, max(1, round(self.density * d)))

    def _sketcher(self, d: int) -> CountSketch:
        return CountSketch(self.rows, self._cols(d), self.hash_seed)

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        arrays: Tensors = {}
        specs: dict[str, Any] = {}
        floats = []
        for name, array in tensors.items():
            if np.issubdtype(array.dtype, np.floating):
                specs[name] = array_spec(array)
                floats.append(np.asarray(array, dtype=np.float32).reshape(-1))
            else:
                arrays[name] = array
        vector = np.concatenate(floats) if floats else np.empty(0, dtype=np.float32)
        if not np.all(np.isfinite(vector)):
            raise ValueError("fetchsgd: the update holds NaN or infinity; cannot sketch it")
        arrays[SKETCH] = self._sketcher(vector.size).sketch(vector).reshape(-1)
        return Encoded(arrays=arrays, meta={"tensors": specs})

    def _read(self, encoded: Encoded) -> tuple[dict[str, Any], int, np.ndarray]:
        """Tensor specs, ``d`` and the checked sketch of one payload."""
        specs = tensor_specs(encoded.meta, "fetchsgd")
        budget = Budget.of(encoded)
        shapes = {
            name: float_spec(name, entry, "fetchsgd", budget) for name, entry in specs.items()
        }
        d = sum(numel for _, _, numel in shapes.values())
        cols = self._cols(d) if d else 1
        table = part(encoded.arrays, "fetchsgd", "fetchsgd", "sketch", np.float32, self.rows * cols)
        table = finite_scalars(table, "fetchsgd", "fetchsgd", "sketch")
        return shapes, d, table.reshape(self.rows, cols)

    def _unflatten(
        self, shapes: dict[str, Any], d: int, pos: np.ndarray, val: np.ndarray
    ) -> Tensors:
        vector = np.zeros(d, dtype=np.float32)
        vector[pos] = val
        out: Tensors = {}
        offset = 0
        for name, (shape, dtype, numel) in shapes.items():
            out[name] = vector[offset : offset + numel].astype(dtype, copy=False).reshape(shape)
            offset += numel
        return out

    def decode(self, encoded: Encoded) -> Tensors:
        shapes, d, table = self._read(encoded)
        out = {k: v for k, v in encoded.arrays.items() if k != SKETCH}
        clash = sorted(set(out) & set(shapes))
        if clash:
            raise DecodeError(f"fetchsgd {clash[0]!r}: sent both raw and sketched")
        if not d:
            return {
                **out,
                **self._unflatten(shapes, 0, np.empty(0, np.int64), np.empty(0, np.float32)),
            }
        pos, val = self._sketcher(d).top_k(table, d, self._k(d))
        return {**out, **self._unflatten(shapes, d, pos, val)}

    def aggregate(
        self, payloads: list[Encoded], weights: list[float], reference: Tensors, state: Tensors
    ) -> tuple[Tensors, Tensors] | None:
        """Sum the sketches, update momentum and error in sketch space, recover the top-k.

        The update covers the tensors the payloads carry (``reference`` may also hold
        tensors that are never sent, e.g. frozen ones).

        Raises
        ------
        DecodeError
            If the payloads' tensors differ from each other or from ``reference``, or a
            sketch is malformed.
        """
        total = None
        shapes: dict[str, Any] = {}
        d = 0
        for encoded, weight in zip(payloads, weights, strict=True):
            mine, d, table = self._read(encoded)
            if shapes and [(n, s[0]) for n, s in mine.items()] != [
                (n, s[0]) for n, s in shapes.items()
            ]:
                raise DecodeError("fetchsgd: the payloads carry different tensors")
            for name, (shape, _, _) in mine.items():
                if name not in reference or reference[name].shape != shape:
                    raise DecodeError(f"fetchsgd {name!r}: not a model tensor of that shape")
            shapes = mine
            total = (
                table * np.float32(weight) if total is None else total + table * np.float32(weight)
            )
        if total is None or not d:
            return None
        sketcher = self._sketcher(d)
        u = state.get("fetchsgd/u")
        e = state.get("fetchsgd/e")
        u = total if u is None or u.shape != total.shape else self.momentum * u + total
        e = u.copy() if e is None or e.shape != total.shape else e + u
        pos, val = sketcher.top_k(e, d, self._k(d))
        update = self._unflatten(shapes, d, pos, val)
        buckets, _ = sketcher.hashes(pos)
        touched = np.zeros(total.shape, dtype=bool)
        touched[np.arange(self.rows)[:, None], buckets] = True
        u = np.where(touched, np.float32(0), u).astype(np.float32)
        e = np.where(touched, np.float32(0), e).astype(np.float32)
        return update, {"fetchsgd/u": u, "fetchsgd/e": e}
