"""Compressors: encode a model update into the arrays that cross the wire."""

from fedcomp.compressors.base import Compressor, DecodeError, Encoded

__all__ = ["Compressor", "DecodeError", "Encoded"]
