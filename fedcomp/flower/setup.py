"""What both apps build from the run config: task, channel, frozen names, round-0 model.

The same config and seed give every process (server thread, Ray actors, SuperNodes) the
same objects, so a client can rebuild the round-0 model (and the frozen layers it never
receives) locally, exactly as the server holds them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Context

from fedcomp.compressors.base import Tensors
from fedcomp.compressors.build import build_channel
from fedcomp.compressors.channel import Channel
from fedcomp.compressors.packing import ModelSpec
from fedcomp.core.instantiate import instantiate_checked
from fedcomp.core.seeds import derive_seed
from fedcomp.flower.protocol import LAYOUTS
from fedcomp.flower.run_config import client_config
from fedcomp.tasks.base import Task


@dataclass
class Setup:
    """Objects built once per process from a resolved config.

    Attributes
    ----------
    cfg
        The resolved config as plain containers.
    task, channel
        Instantiated from ``cfg["task"]`` and ``cfg["compressor"]``.
    frozen
        Names of frozen tensors: never trained, never sent in either direction.
    initial_state
        The round-0 global model (seeded init or the task's checkpoint), fp32 numpy.
    adapter_names
        Tensors that adapters (``compressor=lora``) added to the task's model.
    dense_bytes
        ``sum(numel × element_size)`` of the full model: what an uncompressed message costs.
        Adapters are left out: they stand for an update of the model's own weights.
    """

    cfg: dict[str, Any]
    task: Task
    channel: Channel
    frozen: frozenset[str]
    initial_state: Tensors
    adapter_names: frozenset[str] = frozenset()

    @property
    def dense_bytes(self) -> int:
        return int(sum(a.nbytes for n, a in self.initial_state.items() if n not in self.adapter_names))

    @property
    def sent_names(self) -> list[str]:
        """Tensors that cross the wire (everything not frozen), in model order."""
        return [name for name in self.initial_state if name not in self.frozen]

    @property
    def seed(self) -> int:
        return int(self.cfg["seed"])

    @property
    def num_rounds(self) -> int:
        return int(self.cfg["federation"]["num_rounds"])

    @property
    def layout(self) -> str:
        """``wire.layout``: ``packed`` (default) or ``arrays``."""
        return str((self.cfg.get("wire") or {}).get("layout", "packed"))

    @functools.cached_property
    def spec(self) -> ModelSpec:
        """Names, shapes and dtypes of the tensors that travel: known to both sides."""
        return ModelSpec.of({n: self.initial_state[n] for n in self.sent_names})

    def model_with(self, state: Tensors) -> torch.nn.Module:
        """A task model holding ``state`` (frozen tensors with ``requires_grad=False``)."""
        model = adapt(self.task.build_model(), self.channel, self.seed)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        for name, param in model.named_parameters():
            param.requires_grad_(name not in self.frozen)
        return model


def model_state(model: torch.nn.Module) -> Tensors:
    """A model's state dict as fp32 numpy copies, in order."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def adapt(model: torch.nn.Module, channel: Channel, seed: int) -> torch.nn.Module:
    """``model`` with the adapters the compressor asks for (LoRA; seeded init), or unchanged."""
    spec = channel.compressor.adapters()
    if spec is None:
        return model
    from fedcomp.tasks.adapters import add_adapters  # PEFT is imported only when used

    return add_adapters(model, **spec, seed=derive_seed(seed, 0, 0, 5))


def adapter_names(model: torch.nn.Module, channel: Channel) -> frozenset[str]:
    """The state-dict names of the adapters :func:`adapt` added (empty without adapters)."""
    if channel.compressor.adapters() is None:
        return frozenset()
    from fedcomp.tasks.adapters import factor_names

    return frozenset(factor_names(model))


def build_setup(cfg: dict[str, Any]) -> Setup:
    """Instantiate the task and the channel; build the round-0 model (adapters included)."""
    task: Task = instantiate_checked(cfg["task"], "task", _convert_="all")
    channel = build_channel(cfg["compressor"])
    torch.manual_seed(derive_seed(int(cfg["seed"]), 0, 0, 0))
    model = adapt(task.initial_model(), channel, int(cfg["seed"]))
    initial_state = model_state(model)
    not_float = [k for k, v in initial_state.items() if not np.issubdtype(v.dtype, np.floating)]
    if not_float:
        raise ValueError(f"task {task.name}: non-float state entries are not supported: {not_float}")
    frozen = frozenset(channel.compressor.frozen_names(list(initial_state)))
    check_channel(cfg, channel)
    return Setup(cfg, task, channel, frozen, initial_state, adapter_names(model, channel))


def check_channel(cfg: dict[str, Any], channel: Channel) -> None:
    """Refuse combinations that cannot work, naming the keys.

    ``client.update=weights`` sends trained weights, not a change: a lossy compressor or
    error feedback then perturbs the weights themselves and the model collapses (0.10
    accuracy on digits).

    Raises
    ------
    ValueError
        Naming ``client.update`` and ``compressor.*`` or ``wire.layout``.
    """
    update = cfg["client"].get("update", "delta")
    if update == "weights" and (channel.compressor.lossy or channel.error_feedback):
        what = "error feedback" if channel.error_feedback else f"the lossy compressor {channel.label()!r}"
        raise ValueError(
            f"client.update=weights with {what}: a lossy compressor must encode a change, not "
            "weights; use client.update=delta, or a lossless compressor "
            "(compressor=none|lossless) with compressor.error_feedback=false"
        )
    layout = (cfg.get("wire") or {}).get("layout", "packed")
    if layout not in LAYOUTS:
        raise ValueError(f"wire.layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")


@functools.lru_cache(maxsize=2)
def _cached_setup(cfg_json: str) -> Setup:
    return build_setup(json.loads(cfg_json))


def get_setup(cfg: dict[str, Any]) -> Setup:
    """The process-wide :class:`Setup` for ``cfg`` (built once, then cached)."""
    return _cached_setup(json.dumps(cfg, sort_keys=True))


def config_from_context(context: Context) -> dict[str, Any]:
    """The fedcomp config of a ``flwr run`` on a SuperNode.

    Carried by fedcomp's engines, or composed from the run config's ``overrides`` (``flwr
    run .``) and fitted to the federation's size (:mod:`fedcomp.flower.run_config`).
    """
    return client_config(context)
