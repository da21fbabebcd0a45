"""The published compressors' configs: exact names, and bad values named before any run."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException

from fedcomp.compressors.build import build_channel
from tests.compressors.test_configs import NAMES, compose_compressor, root_cause

PUBLISHED = [
    "fp16",
    "bf16",
    "randomk",
    "qsgd",
    "terngrad",
    "signsgd",
    "efsignsgd",
    "natural",
    "powersgd",
    "dgc",
    "stc",
    "eden",
    "fetchsgd",
]
#: Where the paper uses error feedback (EF-signSGD, PowerSGD, STC, random-k with memory).
WITH_ERROR_FEEDBACK = {"randomk", "efsignsgd", "powersgd", "stc"}


def test_every_published_name_has_a_config():
    assert set(PUBLISHED) <= set(NAMES)


@pytest.mark.parametrize("name", PUBLISHED)
def test_error_feedback_where_the_paper_uses_it(name):
    channel = build_channel(compose_compressor(name))
    assert channel.error_feedback == (name in WITH_ERROR_FEEDBACK)
    assert channel.downlink == (name == "stc")  # STC compresses both directions
    assert channel.compressor.lossy


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("qsgd", "compressor.levels=0", "compressor.levels"),
        ("qsgd", "compressor.coding=huffman", "compressor.coding"),
        ("powersgd", "compressor.rank=0", "compressor.rank"),
        ("fetchsgd", "compressor.sketch_density=0.001", "compressor.sketch_density"),
        ("fetchsgd", "compressor.rows=0", "compressor.rows"),
        ("randomk", "compressor.density=0", "compressor.density"),
        ("terngrad", "compressor.packing=4bit", "compressor.packing"),
        ("signsgd", "compressor.step=-1", "compressor.step"),
        ("dgc", "compressor.momentum=1.5", "compressor.momentum"),
        ("stc", "compressor.density=2", "compressor.density"),
        ("eden", "compressor.block_size=1000", "compressor.block_size"),
        ("fp16", "compressor.format=fp8", "compressor.format"),
    ],
)
def test_bad_values_raise_value_error_naming_the_key(name, override, key):
    with pytest.raises((ValueError, InstantiationException), match=key) as info:
        build_channel(compose_compressor(name, [override]))
    assert isinstance(root_cause(info.value), ValueError)
