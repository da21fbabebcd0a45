"""Errors every layer may raise; commands turn them into exit codes."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names key and allowed values.

    Commands exit with code 2 on it, before any engine starts.
    """
