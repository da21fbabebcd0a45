"""Build a :class:`~fedcomp.compressors.channel.Channel` from its Hydra config.

``conf/compressor/<name>.yaml`` names a :class:`~fedcomp.compressors.base.Compressor`
class by ``_target_`` with its settings, plus the keys in :data:`CHANNEL_KEYS` that
say how the federated layer applies it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedcomp.compressors.base import Compressor
from fedcomp.compressors.channel import Channel
from fedcomp.core.instantiate import instantiate_checked

#: Keys of a compressor config that configure the channel, not the compressor class.
CHANNEL_KEYS = ("error_feedback", "downlink")
#: An optional compressor config (with ``_target_``) for the downlink alone.
DOWNLINK_KEY = "downlink_compressor"


def build_compressor(cfg: dict[str, Any]) -> Compressor:
    """Instantiate the ``_target_`` of ``cfg`` (channel keys removed beforehand).

    Raises
    ------
    ValueError
        The compressor's own message for a bad setting, or a target that is not a
        :class:`Compressor`.
    """
    if "_target_" not in cfg:
        raise ValueError("compressor: expected a config with a _target_ Compressor class")
    compressor = instantiate_checked(cfg, "compressor", _convert_="all")
    if not isinstance(compressor, Compressor):
        raise ValueError(
            f"compressor._target_: {cfg['_target_']} did not build a Compressor "
            f"(got {type(compressor).__name__})"
        )
    return compressor


def build_channel(cfg: DictConfig | dict[str, Any]) -> Channel:
    """The compressor in ``cfg`` and the channel keys around it.

    Raises
    ------
    ValueError
        If the config is not a compressor, or a channel key is not a boolean.
    """
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if not isinstance(data, dict):
        raise ValueError("compressor: expected a mapping")
    options = {key: data.pop(key, False) for key in CHANNEL_KEYS}
    for key, value in options.items():
        if not isinstance(value, bool):
            raise ValueError(f"compressor.{key}: expected true or false, got {value!r}")
    down_cfg = data.pop(DOWNLINK_KEY, None)
    compressor = build_compressor(data)
    if options["error_feedback"] and not compressor.lossy:
        options["error_feedback"] = False  # nothing is ever dropped: no residual to keep
    down = None
    if down_cfg is not None:
        if not isinstance(down_cfg, dict):
            raise ValueError(f"compressor.{DOWNLINK_KEY}: expected a compressor config with _target_ or null")
        try:
            down = build_compressor(dict(down_cfg))
        except ValueError as err:
            raise ValueError(f"compressor.{DOWNLINK_KEY}: {err}") from None
    return Channel(compressor=compressor, downlink_compressor=down, **options)
