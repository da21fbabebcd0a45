"""Update transforms: encode a model update into the arrays that cross the wire."""

from fedcomp.transforms.base import Encoded, Transform

__all__ = ["Encoded", "Transform"]
