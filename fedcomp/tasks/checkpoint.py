"""Load and save model checkpoints (``task.checkpoint``).

A checkpoint is either

- a file: a ``torch.save``d state dict (``.pt``; a ``{"state_dict": ...}`` wrapper is
  accepted too) or a ``.safetensors`` file; or
- a Hugging Face model directory (``save_pretrained`` output: ``config.json`` plus
  ``model.safetensors`` / sharded ``model.safetensors.index.json`` /
  ``pytorch_model.bin``). Its weights are read from the files directly, never
  downloaded.

Loading is strict: every parameter and persistent buffer of the model must be present
with the same shape, and nothing else may be there. Anything else raises ``ValueError``
naming ``task.checkpoint`` and the offending keys, so a checkpoint of another
architecture can never be half-loaded silently. Values are copied into the model's own
tensors, so the model keeps its dtype (float32).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from fedcomp.core.files import atomic_write

__all__ = ["load_checkpoint", "save_checkpoint", "read_state_dict", "is_hf_model_dir"]

_MAX_LISTED = 10


def is_hf_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by ``save_pretrained`` (has config.json)."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / "config.json").is_file()


def _read_hf_dir(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single = path / "model.safetensors"
    if single.is_file():
        return load_file(str(single), device="cpu")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(path / shard), device="cpu"))
        return state
    binary = path / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise ValueError(
        f"task.checkpoint={str(path)!r} is a directory but holds no model weights "
        "(expected model.safetensors, model.safetensors.index.json or pytorch_model.bin)"
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the tensors of a checkpoint file or Hugging Face model directory.

    Raises ``FileNotFoundError`` naming ``task.checkpoint`` when ``path`` does not exist
    and ``ValueError`` when it holds no state dict.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"task.checkpoint={str(path)!r} does not exist "
            "(write one with `python -m fedcomp.pretrain task=<name>`, or set task.checkpoint=null)"
        )
    if p.is_dir():
        return _read_hf_dir(p)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p), device="cpu")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, ...
        raise ValueError(f"task.checkpoint={str(path)!r} is not a readable torch checkpoint: {exc}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"task.checkpoint={str(path)!r} does not hold a state dict (a mapping of names to tensors)"
        )
    return dict(obj)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f"[{shown}{f', ... (+{more} more)' if more > 0 else ''}]"


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load the checkpoint at ``path`` into ``model`` in place (strictly) and return it.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (the message names ``task.checkpoint``).
    ValueError
        The checkpoint does not match the model: missing keys, unexpected keys or shape
        mismatches, each listed by name. Weights tied in the model (several names, one
        tensor, e.g. tied input/output embeddings) count as present when any one of their
        names is in the checkpoint, as ``save_pretrained`` stores them once.
    """
    state = read_state_dict(path)
    expected = model.state_dict()

    # names that share storage in the model (tied weights): one present => all present
    by_ptr: dict[int, list[str]] = {}
    for key, tensor in expected.items():
        if tensor.numel():
            by_ptr.setdefault(tensor.data_ptr(), []).append(key)
    missing = []
    for key in expected:
        if key in state:
            continue
        aliases = by_ptr.get(expected[key].data_ptr(), []) if expected[key].numel() else []
        if any(a in state for a in aliases):
            continue
        missing.append(key)
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_listing(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches {_listing(mismatched)}")
        raise ValueError(
            f"task.checkpoint={str(path)!r} does not match the task's model "
            f"({type(model).__name__}): " + "; ".join(problems)
        )
    # copy_ casts to the model's dtype (fp16/bf16 checkpoints load into fp32 models)
    with torch.no_grad():
        for key, tensor in expected.items():
            src = state.get(key)
            if src is None:  # tied alias of a loaded tensor
                continue
            tensor.copy_(src)
    return model


def save_checkpoint(model: torch.nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` with ``torch.save``, atomically.

    The file is written to a temporary name in the same directory and moved into place
    with ``os.replace``, so readers never see a partial checkpoint. Parent directories are
    created. Returns the path written.
    """
    p = Path(path).expanduser()
    state = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    state = {k: v.detach().cpu() for k, v in state.items()}
    atomic_write(p, lambda handle: torch.save(state, handle))
    return p
