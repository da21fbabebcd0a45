"""EDEN / DRIVE (Vargaftik et al. 2021, 2022): 1 bit per entry after a random rotation.

Each tensor is flattened and cut into blocks of ``block_size`` entries (a power of two;
the last, shorter block is zero-padded to the next power of two). A block ``x`` of
length ``L`` is rotated by the randomized Hadamard transform ``y = H D x / sqrt(L)``
(``D`` a diagonal of random ±1 both sides derive from a seed, ``H`` the Walsh-Hadamard
matrix); only ``sign(y)`` (1 bit per entry) and one scale ``S`` per block travel. The
receiver rebuilds ``x̂ = D H (S · sign(y)) / sqrt(L)``. The scale:

- ``unbiased=true`` (EDEN's unbiased 1-bit case, DRIVE's unbiased variant):
  ``S = ||x||² / ||y||_1``, so ``⟨x̂, x⟩ = ||x||²`` and, over a uniformly random
  rotation, ``E[x̂] = x``; the normalized error ``E||x̂ - x||² / ||x||²`` tends to
  ``π/2 - 1`` (about 0.571) as blocks grow. The randomized Hadamard transform only
  approximates a uniform rotation: on blocks of a few dozen entries the bias is
  measurable, at hundreds of entries and more (the default is 16,384) it is not.
- ``unbiased=false`` (DRIVE's MSE-optimal scale): ``S = ||y||_1 / L``, error ratio
  about ``1 - 2/π`` (0.363), biased.

Wire format per tensor: ``name/signs`` (one bit per padded entry, ``ceil(P / 8)``
bytes), ``name/scales`` float32 (one per block), ``name/seed`` uint64 (one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedcomp.compressors.base import DecodeError, Tensors
from fedcomp.compressors.bitcodes import packed_size
from fedcomp.compressors.payload import finite_scalars, part
from fedcomp.compressors.pertensor import CHUNK, PerTensor, TensorCode, as_flat32, check_finite, seed_array, seeded
from fedcomp.compressors.settings import boolean, integer
from fedcomp.compressors.signsgd import pack_signs, unpack_signs


def fwht(blocks: np.ndarray) -> np.ndarray:
    """Unnormalized Walsh-Hadamard transform along the last axis (a power of two long)."""
    rows, length = blocks.shape
    out = blocks.astype(np.float32, copy=True)
    h = 1
    while h < length:
        view = out.reshape(rows, length // (2 * h), 2, h)
        a, b = view[:, :, 0, :].copy(), view[:, :, 1, :]
        view[:, :, 0, :] += b
        view[:, :, 1, :] = a - b
        h *= 2
    return out


def block_lengths(numel: int, block_size: int) -> list[int]:
    """Lengths of the padded blocks of a tensor of ``numel`` entries."""
    full, rest = divmod(numel, block_size)
    tail = [1 << (rest - 1).bit_length()] if rest else []
    return [block_size] * full + tail


class EDEN(PerTensor):
    """1-bit EDEN/DRIVE (see the module docstring).

    Parameters
    ----------
    unbiased
        Unbiased scale (EDEN) or the MSE-optimal biased one (DRIVE).
    block_size
        Entries per rotated block, a power of two >= 2.
    """

    who = "eden"
    parts = ("signs", "scales", "seed")

    def __init__(self, unbiased: bool = True, block_size: int = 16384) -> None:
        self.unbiased = boolean("unbiased", unbiased)
        self.block_size = integer("block_size", block_size, 2)
        if block_size & (block_size - 1):
            raise ValueError(f"compressor.block_size: must be a power of two, got {block_size!r}")

    def label(self) -> str:
        return "EDEN 1-bit" + ("" if self.unbiased else " biased")

    def _groups(self, numel: int) -> list[tuple[int, int, int]]:
        """``(start, rows, length)`` runs of equal-length blocks over the padded vector."""
        lengths = block_lengths(numel, self.block_size)
        full = numel // self.block_size
        groups = [(0, full, self.block_size)] if full else []
        if len(lengths) > full:
            groups.append((full * self.block_size, 1, lengths[-1]))
        return groups

    def encode_tensor(self, name: str, array: np.ndarray, rng: np.random.Generator) -> TensorCode:
        flat = as_flat32(array)
        check_finite(name, flat, self.who)
        seed = seed_array(rng)
        lengths = block_lengths(flat.size, self.block_size)
        padded = np.zeros(sum(lengths), dtype=np.float32)
        padded[: flat.size] = flat
        padded *= self._diagonal(seed, padded.size)
        rotated = np.empty_like(padded)
        scales = []
        for start, rows, length in self._groups(flat.size):
            x = padded[start : start + rows * length].reshape(rows, length)
            y = fwht(x) / np.float32(np.sqrt(length))
            rotated[start : start + rows * length] = y.reshape(-1)
            l1 = np.abs(y).sum(axis=1, dtype=np.float64)
            if self.unbiased:
                energy = np.square(x, dtype=np.float64).sum(axis=1)
                scales.append(np.divide(energy, l1, out=np.zeros_like(l1), where=l1 > 0))
            else:
                scales.append(l1 / length)
        scale = np.concatenate(scales).astype(np.float32) if scales else np.empty(0, np.float32)
        return {"signs": pack_signs(rotated), "scales": scale, "seed": seed}, {}

    @staticmethod
    def _diagonal(seed: np.ndarray, size: int) -> np.ndarray:
        return 1 - 2 * seeded(seed).integers(0, 2, size=size, dtype=np.int8)

    def decode_tensor(
        self, name: str, arrays: Tensors, shape: tuple[int, ...], numel: int, entry: dict[str, Any]
    ) -> np.ndarray:
        lengths = block_lengths(numel, self.block_size)
        total = sum(lengths)
        seed = part(arrays, self.who, name, "seed", np.uint64, 1)
        scales = part(arrays, self.who, name, "scales", np.float32, len(lengths))
        scales = finite_scalars(scales, self.who, name, "scales")
        packed = part(arrays, self.who, name, "signs", np.uint8, packed_size(total, 1))
        if (scales < 0).any():
            raise DecodeError(f"eden {name!r}: negative block scale")
        out = np.empty(total, dtype=np.float32)
        block = 0
        for start, rows, length in self._groups(numel):
            step = max(1, CHUNK // length)  # blocks per work chunk
            for first in range(0, rows, step):
                count = min(step, rows - first)
                at = start + first * length
                y = unpack_signs(packed, count * length, at).reshape(count, length)
                y *= scales[block + first : block + first + count, None]
                out[at : at + count * length] = (fwht(y) / np.float32(np.sqrt(length))).reshape(-1)
            block += rows
        out *= self._diagonal(seed, total)
        return out[:numel]
