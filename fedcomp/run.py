"""``python -m fedcomp.run``: one federated run (or a Hydra multirun sweep with ``-m``).

Examples
--------
``python -m fedcomp.run``                                     mnist, identity, 20 rounds
``python -m fedcomp.run compressor=topk compressor.density=0.05``
``python -m fedcomp.run experiment=lesson_bandwidth``        the 212 MB lesson
``python -m fedcomp.run -m compressor=none,topk,quant8 seed=0,1,2``
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from fedcomp.config import CONF_DIR, to_container
from fedcomp.engines.launch import execute_cli


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    execute_cli(to_container(cfg))


if __name__ == "__main__":
    main()
