"""``python -m fedcomp.deploy [overrides]``: ``fedcomp.run`` on Flower's Deployment Engine.

The same as ``python -m fedcomp.run engine=deployment ...`` (see
:mod:`fedcomp.engines.deployment.engine`); an explicit ``engine=`` override wins. Secure
by default: TLS with a CA made for the run and registered SuperNodes only
(``engine.tls=false`` for plain HTTP, with a warning).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fedcomp.config import CONF_DIR, to_container
from fedcomp.engines.launch import execute_cli


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def _main(cfg: DictConfig) -> None:
    execute_cli(to_container(cfg))


def main() -> None:
    """Add ``engine=deployment`` unless the command line chooses an engine."""
    if not any(arg.split("=")[0].lstrip("+~") == "engine" for arg in sys.argv[1:]):
        sys.argv.insert(1, "engine=deployment")
    _main()


if __name__ == "__main__":
    main()
