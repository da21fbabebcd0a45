"""Build a config section's ``_target_`` with Hydra, surfacing the constructor's own error."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate


def instantiate_checked(cfg: Any, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg, **kwargs)``, with a clear error on a bad setting.

    Hydra wraps what a constructor raises in ``InstantiationException`` (a multi-line
    message with the target's path). Components check their settings with a
    ``ValueError`` that names the key (``task.model: must be one of ...``); that message
    is raised as is, so commands print it as one line and exit 2.

    Raises
    ------
    ValueError
        The constructor's own ``ValueError``/``TypeError`` message, or
        ``<key>._target_: ...`` when the target itself cannot be built.
    """
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, TypeError)):
            raise ValueError(str(cause)) from None
        raise ValueError(f"{key}._target_: {err}") from None
