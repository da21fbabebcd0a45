"""fedcomp: measure the bytes a federated run really moves, and what compression saves."""

__version__ = "0.1.0"
