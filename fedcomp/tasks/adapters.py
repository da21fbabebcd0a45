"""LoRA adapters on a causal language model, with Hugging Face PEFT (``compressor=lora``).

:func:`add_adapters` wraps a ``transformers`` causal LM with PEFT's ``LoraConfig`` /
``get_peft_model``: every targeted ``Linear`` ``W`` gains factors ``A`` (``r × in``,
Kaiming-uniform) and ``B`` (``out × r``, zeros), so the wrapped model starts out equal
to the base model and computes ``W + (lora_alpha / r) · B·A``. The initialisation is
drawn from ``seed`` alone, so every process (server, clients) builds the same ``A``:
FFA-LoRA (``train_a=False``) keeps ``A`` there for the whole run and trains ``B`` only.

The wrapped model's state dict holds the base weights under PEFT's names
(``base_model.model.<module>.base_layer.weight``) and the factors as
``base_model.model.<module>.lora_A.default.weight`` / ``lora_B``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn
from transformers import PreTrainedModel


def check_language_model(model: nn.Module) -> None:
    """Refuse a model that is not a ``transformers`` causal language model.

    Raises
    ------
    ValueError
        Naming ``compressor=lora`` and the task's model class.
    """
    if not (isinstance(model, PreTrainedModel) and model.can_generate()):
        raise ValueError(
            "compressor=lora: adapters need a task with a transformers causal language model "
            f"(e.g. task=pythia14m); this task's model is {type(model).__name__}"
        )


def check_targets(model: nn.Module, target_modules: Sequence[str]) -> None:
    """Refuse a ``target_modules`` entry that matches no module (PEFT would skip it silently).

    An entry matches a module named exactly so or ending in ``.<entry>`` (PEFT's rule).

    Raises
    ------
    ValueError
        Naming ``compressor.target_modules``, the entry and the model's Linear modules.
    """
    names = [name for name, _ in model.named_modules() if name]
    for entry in target_modules:
        config = LoraConfig(target_modules=[entry])
        if not any(check_target_module_exists(config, name) for name in names):
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(
                f"compressor.target_modules: {entry!r} matches no module of "
                f"{type(model).__name__}; its Linear modules are named {', '.join(linear)}"
            )


def add_adapters(
    model: nn.Module,
    r: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: Sequence[str],
    train_a: bool,
    seed: int,
) -> PeftModel:
    """``model`` wrapped with LoRA adapters; only the factors are trainable.

    Parameters
    ----------
    model
        A ``transformers`` causal LM (its weights become the frozen base).
    r, lora_alpha, lora_dropout, target_modules
        PEFT's ``LoraConfig`` settings.
    train_a
        ``False`` (FFA-LoRA): ``A`` stays at its initialisation, only ``B`` is trainable.
    seed
        Seeds the adapters' initialisation (the global torch RNG is left as it was).

    Raises
    ------
    ValueError
        Not a causal LM, or a ``target_modules`` entry that matches no module, or one
        PEFT cannot adapt (naming ``compressor.target_modules``).
    """
    check_language_model(model)
    check_targets(model, target_modules)
    config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules),
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # PEFT 0.21 calls a transformers 5 method that warns of its own rename; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        try:
            wrapped = get_peft_model(model, config)
        except ValueError as err:  # e.g. a matched module of a type LoRA does not support
            raise ValueError(f"compressor.target_modules: {err}") from err
    if not train_a:
        frozen = factor_names(wrapped, "A")
        for name, param in wrapped.named_parameters():
            if name in frozen:
                param.requires_grad_(False)
    return wrapped


def factor_names(model: nn.Module, factor: str = "AB") -> set[str]:
    """State-dict names of the adapter factors (``"A"``, ``"B"`` or both) of a wrapped model."""
    prefixes = tuple(f"lora_{f}." for f in factor)
    return {
        f"{module_name}.{name}"
        for module_name, module in model.named_modules()
        if isinstance(module, LoraLayer)
        for name, _ in module.named_parameters()
        if name.startswith(prefixes)
    }
