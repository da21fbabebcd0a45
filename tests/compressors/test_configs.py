"""Every conf/compressor/*.yaml composes inside conf/config.yaml, builds and round-trips."""

from __future__ import annotations

import importlib
import inspect
import json

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException

from fedcomp.compressors.base import Compressor, Encoded
from fedcomp.compressors.build import CHANNEL_KEYS, DOWNLINK_KEY, build_channel
from fedcomp.config import CONF_DIR as CONF
from tests.helpers import MNIST_SHAPES

NAMES = sorted(p.stem for p in (CONF / "compressor").glob("*.yaml"))

# Pythia-like names (small shapes) for the configs written for the language model.
PYTHIA_SHAPES = {
    "gpt_neox.embed_in.weight": (500, 16),
    "gpt_neox.layers.0.attention.query_key_value.weight": (48, 16),
    "gpt_neox.layers.0.attention.query_key_value.bias": (48,),
    "gpt_neox.final_layer_norm.weight": (16,),
    "lm_head.weight": (500, 16),
}
PYTHIA_CONFIGS = {"freeze_embeddings"}
# A PEFT-wrapped model (compressor=lora*): base weights and one module's adapter factors.
LORA_SHAPES = {
    "base_model.model.gpt_neox.embed_in.weight": (500, 16),
    "base_model.model.gpt_neox.layers.0.attention.dense.base_layer.weight": (16, 16),
    "base_model.model.gpt_neox.layers.0.attention.dense.lora_A.default.weight": (8, 16),
    "base_model.model.gpt_neox.layers.0.attention.dense.lora_B.default.weight": (16, 8),
}
LORA_CONFIGS = {name for name in NAMES if name.startswith("lora")}


def compose_compressor(name: str, overrides: list[str] = ()):
    # Only the compressor group is under test: other groups are dropped from the
    # defaults so this test does not depend on their files.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"compressor={name}", "~task", "~partition", *overrides],
        )
    return cfg.compressor


def test_there_are_configs():
    assert {"none", "topk", "threshold", "quant8", "quant4", "quant2", "quant1", "lossless",
            "topk_quant8", "topk_quant8_zstd", "freeze_topk_quant8", "freeze_convs",
            "freeze_embeddings"} <= set(NAMES)


def check_keys_are_constructor_args(node: dict, where: str) -> None:
    module, _, cls = node["_target_"].rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), cls)).parameters
    for key, value in node.items():
        if key == "_target_" or (where == "compressor" and key in CHANNEL_KEYS):
            continue
        if where == "compressor" and key == DOWNLINK_KEY:
            if value is not None:
                check_keys_are_constructor_args(value, f"{where}.{DOWNLINK_KEY}")
            continue
        assert key in params, f"{where}.{key} is not an argument of {node['_target_']}"
        if key == "stages":
            for i, stage in enumerate(value):
                check_keys_are_constructor_args(stage, f"{where}.stages.{i}")


@pytest.mark.parametrize("name", NAMES)
def test_yaml_is_documented_and_every_key_is_an_argument(name):
    path = CONF / "compressor" / f"{name}.yaml"
    assert path.read_text().startswith("# "), "first line: a one-line comment saying what it is"
    data = yaml.safe_load(path.read_text())
    for key in CHANNEL_KEYS:
        assert isinstance(data.get(key), bool), f"{name}.yaml needs a top-level {key}: true|false"
    check_keys_are_constructor_args(data, "compressor")


@pytest.mark.parametrize("name", NAMES)
def test_compose_build_and_round_trip(name):
    channel = build_channel(compose_compressor(name))
    transform = channel.compressor
    assert isinstance(transform, Compressor)
    shapes = PYTHIA_SHAPES if name in PYTHIA_CONFIGS else LORA_SHAPES if name in LORA_CONFIGS else MNIST_SHAPES
    g = np.random.default_rng(0)
    x = {n: g.standard_normal(s, dtype=np.float32) * 0.01 for n, s in shapes.items()}
    frozen = transform.frozen_names(list(x))
    enc = transform.encode(x, np.random.default_rng(1))
    # meta travels as a JSON string: decode from what JSON gives back.
    meta = json.loads(json.dumps(enc.meta))
    assert meta == enc.meta
    dec = transform.decode(Encoded(arrays=enc.arrays, meta=meta))
    # frozen tensors come back as zeros, or not at all when the receiver holds them (lora)
    assert list(dec) == ([n for n in x if n not in frozen] if name in LORA_CONFIGS else list(x))
    for n in dec:
        a = x[n]
        assert dec[n].shape == a.shape and dec[n].dtype == a.dtype, n
        if n in frozen:
            assert not dec[n].any()
        elif not transform.lossy:
            np.testing.assert_array_equal(dec[n], a)
    dense = sum(a.nbytes for a in x.values())
    if transform.lossy or frozen:
        assert enc.payload_bytes < dense
    if channel.error_feedback:
        assert transform.lossy


def test_command_line_overrides_reach_the_constructor():
    topk = build_channel(compose_compressor("topk", ["compressor.density=0.05"])).compressor
    assert topk.density == 0.05
    chain = build_channel(
        compose_compressor("topk_quant8", ["compressor.stages.0.density=0.05", "compressor.stages.1.bits=4"])
    ).compressor
    assert chain.stages[0].density == 0.05 and chain.stages[1].bits == 4
    off = build_channel(compose_compressor("topk", ["compressor.error_feedback=false"]))
    assert off.error_feedback is False


def root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("topk", "compressor.density=1.5", "compressor.density"),
        ("threshold", "compressor.threshold=-1", "compressor.threshold"),
        ("topk", "compressor.index_encoding=int64", "compressor.index_encoding"),
        ("quant4", "compressor.bits=3", "compressor.bits"),
        ("quant8", "compressor.block_size=0", "compressor.block_size"),
        ("quant1", "compressor.rounding=up", "compressor.rounding"),
        ("lossless", "compressor.codec=lz4", "compressor.codec"),
        ("freeze_convs", "compressor.syntax=sql", "compressor.syntax"),
        ("topk_quant8", "compressor.stages.1.bits=5", "compressor.bits"),
    ],
)
def test_bad_values_raise_value_error_naming_the_key(name, override, key):
    # Hydra wraps constructor errors in InstantiationException; the cause is our ValueError.
    with pytest.raises((ValueError, InstantiationException), match=key) as info:
        build_channel(compose_compressor(name, [override]))
    assert isinstance(root_cause(info.value), ValueError)
