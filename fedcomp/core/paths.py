"""Where fedcomp's own files live: the project root (pyproject.toml, the Flower App) and conf/."""

from __future__ import annotations

from pathlib import Path

#: The source tree fedcomp is installed from (``pip install -e .``).
PROJECT_DIR = Path(__file__).resolve().parents[2]
#: The Hydra config tree.
CONF_DIR = PROJECT_DIR / "conf"
