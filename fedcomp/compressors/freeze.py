"""Freeze: never send the update of frozen (pretrained, not trained) tensors.

A frozen tensor is not trained, so its update is exactly zero and sending it wastes
bandwidth. :class:`Freeze` drops every tensor whose name matches one of the patterns
and records the dropped names with their shapes and dtypes in ``meta``; decoding
restores them as zeros. The federated layer calls :meth:`Freeze.frozen_names` on the
model's parameter names before the run starts (to stop training them, and to fail
early when the patterns are wrong).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors, array_spec, spec_from_meta
from fedcomp.compressors.payload import Budget

SYNTAXES = ("glob", "regex")


class Freeze(Compressor):
    """Drop tensors whose names match ``patterns``; decode them as zeros.

    Lossless for what it is meant for (tensors that are not trained, whose update is
    zero); if a matching tensor *was* trained, its update is discarded.

    Parameters
    ----------
    patterns
        Name patterns; a tensor is frozen when any pattern matches its name.
    syntax
        ``"glob"``: shell-style, matched against the whole name, case-sensitive
        (``fnmatch.fnmatchcase``; ``*`` also matches dots, so ``conv*`` freezes
        ``conv1.weight``). ``"regex"``: ``re.search`` anywhere in the name (anchor with
        ``^``/``$``).
    """

    lossy = False

    def __init__(self, patterns: list[str], syntax: str = "glob") -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        if (
            not isinstance(patterns, (list, tuple))
            or not patterns
            or not all(isinstance(p, str) and p for p in patterns)
        ):
            raise ValueError(
                "compressor.patterns: must be a non-empty list of non-empty strings, "
                f"got {patterns!r}"
            )
        if syntax not in SYNTAXES:
            raise ValueError(f"compressor.syntax: must be one of {list(SYNTAXES)}, got {syntax!r}")
        self.patterns = list(patterns)
        self.syntax = syntax
        self._regexes: list[re.Pattern[str]] = []
        if syntax == "regex":
            for pattern in self.patterns:
                try:
                    self._regexes.append(re.compile(pattern))
                except re.error as err:
                    raise ValueError(
                        f"compressor.patterns: invalid regular expression {pattern!r}: {err}"
                    ) from err

    def params(self) -> dict:
        return {"patterns": list(self.patterns), "syntax": self.syntax}

    def label(self) -> str:
        return "freeze " + ",".join(self.patterns)

    def matches(self, name: str) -> bool:
        """Whether ``name`` is frozen."""
        if self.syntax == "regex":
            return any(regex.search(name) for regex in self._regexes)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def frozen_names(self, names: Iterable[str]) -> set[str]:
        """The names that match.

        Raises
        ------
        ValueError
            If the patterns match none of ``names`` (probably a typo) or all of them
            (nothing would be trained or sent).
        """
        names = list(names)
        frozen = {name for name in names if self.matches(name)}
        if not frozen:
            raise ValueError(
                f"compressor.patterns: {self.patterns} ({self.syntax}) match none of the "
                f"{len(names)} tensor names (e.g. {names[:4]})"
            )
        if len(frozen) == len(set(names)):
            raise ValueError(
                f"compressor.patterns: {self.patterns} ({self.syntax}) match all "
                f"{len(names)} tensor names; nothing would be trained or sent"
            )
        return frozen

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        frozen = self.frozen_names(tensors)
        arrays: Tensors = {}
        dropped: dict[str, Any] = {}
        for position, (name, array) in enumerate(tensors.items()):
            if name in frozen:
                dropped[name] = {**array_spec(array), "pos": position}
            else:
                arrays[name] = array
        return Encoded(arrays=arrays, meta={"frozen": dropped})

    def decode(self, encoded: Encoded) -> Tensors:
        dropped = encoded.meta.get("frozen")
        if not isinstance(dropped, dict):
            raise DecodeError("freeze: meta has no 'frozen' dict")
        zeros: dict[str, tuple[int, np.ndarray]] = {}
        budget = Budget.of(encoded)
        for name, entry in dropped.items():
            shape, dtype = spec_from_meta(name, entry, "freeze")
            budget.take("freeze", name, math.prod(shape) * dtype.itemsize)
            position = entry.get("pos")
            if isinstance(position, bool) or not isinstance(position, int) or position < 0:
                raise DecodeError(f"freeze {name!r}: bad position {position!r} in meta")
            if name in encoded.arrays:
                raise DecodeError(f"freeze {name!r}: frozen tensor is also in the payload")
            zeros[name] = (position, np.zeros(shape, dtype=dtype))
        # Restore the sender's order: frozen tensors go back to their positions.
        total = len(encoded.arrays) + len(zeros)
        by_position = {position: (name, z) for name, (position, z) in zeros.items()}
        if len(by_position) != len(zeros) or any(p >= total for p in by_position):
            raise DecodeError(
                f"freeze: frozen positions {sorted(p for p, _ in zeros.values())} collide or "
                f"exceed the {total} tensors"
            )
        out: Tensors = {}
        sent = iter(encoded.arrays.items())
        for position in range(total):
            name, array = by_position[position] if position in by_position else next(sent)
            out[name] = array
        return out
