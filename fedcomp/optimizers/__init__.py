"""Server optimizers (Reddi et al. 2021): how the server applies the aggregated update."""

from fedcomp.optimizers.base import ServerOptimizer
from fedcomp.optimizers.build import OPTIMIZERS, build_optimizer

__all__ = ["OPTIMIZERS", "ServerOptimizer", "build_optimizer"]
