"""What every process builds from the config, and the combinations it refuses."""

import pytest

from fedcomp.compressors.channel import Channel
from fedcomp.compressors.identity import Identity
from fedcomp.compressors.lossless import Lossless
from fedcomp.compressors.quantize import Quantize
from fedcomp.compressors.topk import TopK
from fedcomp.flower.setup import check_channel


def _cfg(update="delta", layout="packed"):
    return {"client": {"update": update}, "wire": {"layout": layout}}


@pytest.mark.parametrize(
    "channel",
    [Channel(TopK(density=0.01), error_feedback=True), Channel(Quantize(bits=8)), Channel(TopK(density=0.5))],
    ids=["topk+ef", "quant8", "topk"],
)
def test_weights_with_a_lossy_compressor_is_refused_naming_both_keys(channel):
    with pytest.raises(ValueError, match=r"client\.update=weights.*compressor"):
        check_channel(_cfg("weights"), channel)


@pytest.mark.parametrize("channel", [Channel(Identity()), Channel(Lossless())], ids=["none", "lossless"])
def test_weights_with_a_lossless_compressor_is_fine(channel):
    check_channel(_cfg("weights"), channel)
    check_channel(_cfg("delta"), Channel(TopK(density=0.01), error_feedback=True))


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match=r"wire\.layout"):
        check_channel(_cfg(layout="npz"), Channel(Identity()))
