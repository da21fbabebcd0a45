"""Build a transform from its Hydra config (``conf/compressor/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fedcomp.transforms.base import Transform

#: Keys of a compressor config that configure the client, not the transform class.
RESERVED_KEYS = ("error_feedback", "downlink")


@dataclass
class Compression:
    """A transform plus how the federated layer applies it.

    Attributes
    ----------
    transform
        The (possibly chained) transform encoding each update.
    error_feedback
        Keep what a lossy transform dropped in the client's state and add it to the
        next round's update.
    downlink
        Also encode the server -> client model (as a delta against the model the
        client holds; see :mod:`fedcomp.fl.codec`).
    """

    transform: Transform
    error_feedback: bool
    downlink: bool


def build_compression(cfg: DictConfig | dict[str, Any]) -> Compression:
    """Instantiate the transform in ``cfg`` and read the reserved keys.

    Raises
    ------
    ValueError
        If the config is not a transform, or a reserved key has the wrong type.
    """
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if not isinstance(data, dict) or "_target_" not in data:
        raise ValueError("compressor: expected a config with a _target_ Transform class")
    options = {key: data.pop(key, False) for key in RESERVED_KEYS}
    for key, value in options.items():
        if not isinstance(value, bool):
            raise ValueError(f"compressor.{key}: expected true or false, got {value!r}")
    try:
        transform = instantiate(data, _convert_="all")
    except InstantiationException as err:
        # Hydra wraps constructor errors; surface the transform's own message
        cause = err.__cause__
        if isinstance(cause, ValueError):
            raise cause from None
        raise
    if not isinstance(transform, Transform):
        raise ValueError(
            f"compressor._target_: {data['_target_']} did not build a Transform "
            f"(got {type(transform).__name__})"
        )
    if options["error_feedback"] and not transform.lossy:
        options["error_feedback"] = False  # nothing is ever dropped: no residual to keep
    return Compression(transform=transform, **options)
