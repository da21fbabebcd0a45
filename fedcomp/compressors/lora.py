"""LoRA: train low-rank adapters on a frozen base model and send only the adapters.

Hu et al. 2022 replace the update of a weight ``W`` (``out × in``) by ``scale · B·A``
with ``A`` (``r × in``) and ``B`` (``out × r``), ``scale = lora_alpha / r``. This
compressor declares *what* to adapt (:meth:`Lora.adapters`); the federated layer wraps
the task's model with Hugging Face PEFT adapters (:mod:`fedcomp.tasks.adapters`) before
it takes the round-0 state, so the adapter tensors are part of the model every process
builds. Every other tensor (the whole base model) is frozen: never trained, never sent,
in either direction (:meth:`Lora.frozen_names`). The compressor recognises adapter
tensors by PEFT's names, ``<module>.lora_A.<adapter>.weight`` and ``...lora_B...``.

Aggregation
-----------
``aggregation="factors"`` (the common default): clients train ``A`` and ``B``, the server
averages each factor separately. The product of the averages is not the average of the
products: ``mean(B)·mean(A) = mean(B·A) − cross terms`` (for two clients,
``(B1+B2)(A1+A2)/4 = (B1A1+B2A2)/2 − (B1−B2)(A1−A2)/4``), so the aggregated model is
not the mean of the clients' models, and the gap grows as clients drift apart.

``aggregation="ffa"`` (FFA-LoRA, Sun et al. 2024): ``A`` stays frozen at its seeded
initialisation (every process builds the same), only ``B`` is trained and sent. Then
``mean(B)·A = mean(B·A)`` exactly, and the ``A`` bytes are never sent: about half the
adapter bytes, exactly ``out / (in + out)`` of each module's (Pythia-14M, r=8: 221,184 of
393,216 B, since ``B`` is the larger factor of ``query_key_value`` and ``dense_h_to_4h``).

Byte accounting
---------------
The payload holds the adapter tensors as they are (float32, model order, empty
``meta``): with the packed layout it is the model's own layout over the sent tensors
(no header). A message's ``dense_bytes`` stays the full model's size (what sending the
update of every weight the adapters stand for would cost), so reports show what the
adapters save against the lesson's formula.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedcomp.compressors.base import Compressor, DecodeError, Encoded, Tensors

#: The target modules of GPT-NeoX (Pythia): attention in/out projections and the MLP.
GPT_NEOX_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
AGGREGATIONS = ("factors", "ffa")
#: PEFT's names of the adapter factors inside a wrapped module.
_FACTOR = re.compile(r"\.lora_(A|B)\.")


class Lora(Compressor):
    """Send only the LoRA adapters (``A`` and ``B``, or ``B`` alone with FFA-LoRA).

    Lossless for what it sends: the adapters travel as float32, unchanged. Put it first
    in a chain (``lora`` then ``quant8``): later stages encode the adapters.

    Parameters
    ----------
    r
        Rank of the adapters (>= 1).
    lora_alpha
        Scaling numerator: the adapted weight is ``W + (lora_alpha / r) · B·A``.
    lora_dropout
        Dropout on the adapters' input while training, in [0, 1).
    target_modules
        Module names (or name suffixes, PEFT's rule) to adapt; each must match a module.
    aggregation
        ``"factors"``: train and average ``A`` and ``B`` separately; ``"ffa"``: FFA-LoRA,
        ``A`` frozen at its seeded initialisation, only ``B`` trained and sent.
    """

    lossy = False

    def __init__(
        self,
        r: int = 8,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        target_modules: list[str] | tuple[str, ...] = GPT_NEOX_TARGETS,
        aggregation: str = "factors",
    ) -> None:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"compressor.r: must be an integer >= 1, got {r!r}")
        if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or not lora_alpha > 0:
            raise ValueError(f"compressor.lora_alpha: must be a number > 0, got {lora_alpha!r}")
        if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, (int, float)) or not 0 <= lora_dropout < 1:
            raise ValueError(f"compressor.lora_dropout: must be in [0, 1), got {lora_dropout!r}")
        if isinstance(target_modules, str):
            target_modules = [target_modules]
        if (
            not isinstance(target_modules, (list, tuple))
            or not target_modules
            or not all(isinstance(t, str) and t for t in target_modules)
        ):
            raise ValueError(
                "compressor.target_modules: must be a non-empty list of module names, "
                f"got {target_modules!r}"
            )
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"compressor.aggregation: must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}"
            )
        self.r = r
        self.lora_alpha = float(lora_alpha)
        self.lora_dropout = float(lora_dropout)
        self.target_modules = list(target_modules)
        self.aggregation = aggregation

    def adapters(self) -> dict[str, Any]:
        """Arguments of :func:`fedcomp.tasks.adapters.add_adapters` (the seed aside)."""
        return {
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": list(self.target_modules),
            "train_a": self.aggregation == "factors",
        }

    def sends(self, name: str) -> bool:
        """Whether tensor ``name`` is a trained adapter factor (``B``; ``A`` too unless FFA)."""
        match = _FACTOR.search(name)
        return match is not None and (match.group(1) == "B" or self.aggregation == "factors")

    def frozen_names(self, names: Iterable[str]) -> set[str]:
        """Every tensor but the trained adapter factors.

        Raises
        ------
        ValueError
            If no name is an adapter factor: the model was not wrapped with adapters.
        """
        names = list(names)
        frozen = {name for name in names if not self.sends(name)}
        if len(frozen) == len(set(names)):
            raise ValueError(
                "compressor=lora: the model has no LoRA adapter tensors (names with '.lora_A.' "
                f"or '.lora_B.'; got e.g. {names[:3]}); the adapters wrap a task's language model"
            )
        return frozen

    def encode(self, tensors: Tensors, rng: np.random.Generator) -> Encoded:
        """The trained adapter factors as they are, in order; everything else is dropped."""
        return Encoded(arrays={n: a for n, a in tensors.items() if self.sends(n)}, meta={})

    def decode(self, encoded: Encoded) -> Tensors:
        """The adapter factors; frozen tensors are not rebuilt (the receiver holds them).

        Raises
        ------
        DecodeError
            If the payload carries a tensor that is not a trained adapter factor.
        """
        foreign = [n for n in encoded.arrays if not self.sends(n)]
        if foreign:
            raise DecodeError(f"lora: the payload carries tensors that are not trained adapters: {foreign[:3]}")
        return dict(encoded.arrays)

    def label(self) -> str:
        return f"lora r={self.r}" + (" ffa" if self.aggregation == "ffa" else "")
