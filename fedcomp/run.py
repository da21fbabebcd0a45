"""``python -m fedcomp.run``: one federated run (or a Hydra multirun sweep with ``-m``).

Examples
--------
``python -m fedcomp.run``                                     mnist, identity, 20 rounds
``python -m fedcomp.run compressor=topk compressor.density=0.05``
``python -m fedcomp.run experiment=lesson_bandwidth``        the 212 MB lesson
``python -m fedcomp.run -m compressor=none,topk,quant8 seed=0,1,2``
``python -m fedcomp.run logger=mlflow``                      also log the run to MLflow

The command line is checked before Hydra starts: a bad key, option or value prints one
line and exits 2 without creating a directory. The check of keys and values needs only
Hydra (it answers in about a second); torch and Flower are imported after it.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fedcomp.config import CONF_DIR, check_command_line, to_container
from fedcomp.core.errors import ConfigError
from fedcomp.engines.interrupt import stop_on_signals

#: Runs the command line holds (counted by :func:`check` before Hydra starts).
NUM_RUNS = [1]


def check(argv: list[str]) -> int:
    """Check and prepare every run of ``argv``; exit 2 with one line if one is rejected."""
    try:
        configs = check_command_line(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if not configs:  # --help, --cfg...: Hydra prints it
        return 1
    from fedcomp.engines.launch import prepare_cli  # torch and Flower: only for a command that runs

    prepare_cli(configs)
    return len(configs)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    from fedcomp.engines.launch import execute_cli
    from fedcomp.tracking.mlflow import log_if_configured

    position = None
    if HydraConfig.get().mode == RunMode.MULTIRUN and NUM_RUNS[0] > 1:  # not counted in a launcher's workers
        position = (int(HydraConfig.get().job.num) + 1, NUM_RUNS[0])
    execute_cli(to_container(cfg), on_complete=log_if_configured, position=position)


if __name__ == "__main__":
    with stop_on_signals():  # one Ctrl-C stops the command at any point: fedcomp/engines/interrupt.py
        NUM_RUNS[0] = check(sys.argv[1:])
        main()
