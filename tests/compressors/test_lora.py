"""Lora (numpy side): which tensors travel, their exact bytes, chains, and bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError, Encoded
from fedcomp.compressors.build import build_channel
from fedcomp.compressors.chain import Chain
from fedcomp.compressors.lora import GPT_NEOX_TARGETS, Lora
from fedcomp.compressors.packing import ModelSpec, pack, unpack
from fedcomp.compressors.quantize import Quantize
from tests.compressors.test_freeze import pythia_shapes
from tests.helpers import compressor_config

PREFIX = "base_model.model."


def wrapped_shapes(shapes: dict[str, tuple[int, ...]], r: int, targets=GPT_NEOX_TARGETS) -> dict:
    """State-dict names and shapes PEFT gives a model whose ``targets`` Linears get rank-``r`` LoRA.

    A targeted ``<m>.weight`` (``out × in``) becomes ``<m>.base_layer.weight`` plus
    ``<m>.lora_A.default.weight`` (``r × in``) and ``<m>.lora_B.default.weight`` (``out × r``).
    """
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in shapes.items():
        module, _, leaf = name.rpartition(".")
        if module.rsplit(".", 1)[-1] in targets:
            out[f"{PREFIX}{module}.base_layer.{leaf}"] = shape
            if leaf == "weight":
                out[f"{PREFIX}{module}.lora_A.default.weight"] = (r, shape[1])
                out[f"{PREFIX}{module}.lora_B.default.weight"] = (shape[0], r)
        else:
            out[PREFIX + name] = shape
    return out


def tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {name: g.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}


def test_pythia14m_r8_adapters_are_393216_bytes_from_the_module_shapes():
    base = pythia_shapes()
    linear = {n: s for n, s in base.items() if n.endswith(".weight") and n.split(".")[-2] in GPT_NEOX_TARGETS}
    # a rank-8 adapter on an out × in Linear holds 8·in (A) + out·8 (B) float32 values
    expected = sum(8 * (s[0] + s[1]) for s in linear.values())
    assert len(linear) == 24 and expected == 98_304
    shapes = wrapped_shapes(base, r=8)
    x = tensors(shapes)
    lora = Lora(r=8)
    sent = [n for n in x if n not in lora.frozen_names(list(x))]
    assert len(sent) == 48 and all(".lora_A." in n or ".lora_B." in n for n in sent)
    encoded = lora.encode(x, np.random.default_rng(0))
    assert list(encoded.arrays) == sent and encoded.meta == {}
    assert encoded.payload_bytes == 4 * expected == 393_216
    # the packed layout carries exactly the sent tensors: a 2-byte prefix, no header
    spec = ModelSpec.of({n: x[n] for n in sent})
    blob = pack(encoded, spec)
    assert len(blob) == encoded.payload_bytes + 2
    dense = sum(a.nbytes for n, a in x.items() if ".lora_" not in n)
    assert dense == 56_270_848 and round(dense / len(blob)) == 143
    for name, value in lora.decode(unpack(blob, spec)).items():
        np.testing.assert_array_equal(value, x[name])


def test_ffa_sends_only_b_and_freezes_a():
    shapes = wrapped_shapes(pythia_shapes(), r=8)
    x = tensors(shapes, 1)
    ffa = Lora(r=8, aggregation="ffa")
    frozen = ffa.frozen_names(list(x))
    assert all(n in frozen for n in x if ".lora_A." in n)
    sent = ffa.encode(x, np.random.default_rng(0)).arrays
    assert sent and all(".lora_B." in n for n in sent)
    b_values = sum(math.prod(s) for n, s in shapes.items() if ".lora_B." in n)
    assert sum(a.nbytes for a in sent.values()) == 4 * b_values == 4 * 6 * 8 * (384 + 128 + 512 + 128)
    assert ffa.adapters()["train_a"] is False and Lora().adapters()["train_a"] is True


def test_a_model_without_adapters_is_refused():
    with pytest.raises(ValueError, match="compressor=lora.*no LoRA adapter"):
        Lora().frozen_names(list(pythia_shapes()))


def test_decode_refuses_a_tensor_that_is_not_a_trained_adapter():
    name = PREFIX + "gpt_neox.layers.0.attention.dense.lora_A.default.weight"
    a = {name: np.ones((8, 128), np.float32)}
    assert Lora().decode(Encoded(arrays=a)) == a
    with pytest.raises(DecodeError, match="not trained adapters"):
        Lora(aggregation="ffa").decode(Encoded(arrays=a))  # FFA never sends A
    with pytest.raises(DecodeError, match="not trained adapters"):
        Lora().decode(Encoded(arrays={"lm_head.weight": np.ones(3, np.float32)}))


def test_lora_then_quant8_quantizes_the_adapters_only():
    shapes = wrapped_shapes(pythia_shapes(), r=4)
    x = tensors(shapes, 2)
    config = compressor_config("lora_quant8")
    config["stages"][0]["r"] = 4
    chain = build_channel(config).compressor
    assert chain.adapters()["r"] == 4 and chain.label() == "lora r=4 + 8-bit"
    sent = [n for n in x if n not in chain.frozen_names(list(x))]
    encoded = chain.encode(x, np.random.default_rng(0))
    values = sum(x[n].size for n in sent)
    # one uint8 code per value, a float32 scale and minimum per tensor
    assert encoded.payload_bytes == values + 8 * len(sent)
    decoded = chain.decode(encoded)
    assert list(decoded) == sent
    for name in sent:
        step = (x[name].max() - x[name].min()) / 255
        assert np.abs(decoded[name] - x[name]).max() <= 0.5 * step + 1e-6


def test_adapters_must_be_the_first_stage_of_a_chain():
    with pytest.raises(ValueError, match=r"compressor\.stages\[1\].*first stage"):
        Chain([Quantize(bits=8), Lora()]).adapters()


@pytest.mark.parametrize("name", ["lora", "lora_ffa", "lora_quant8"])
def test_published_configs_build(name):
    compressor = build_channel(compressor_config(name)).compressor
    spec = compressor.adapters()
    assert spec == {"r": 8, "lora_alpha": 16.0, "lora_dropout": 0.0,
                    "target_modules": list(GPT_NEOX_TARGETS), "train_a": name != "lora_ffa"}
    assert compressor.lossy == (name == "lora_quant8")


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"r": 0}, "compressor.r"),
        ({"r": 2.5}, "compressor.r"),
        ({"r": True}, "compressor.r"),
        ({"lora_alpha": 0}, "compressor.lora_alpha"),
        ({"lora_dropout": 1.0}, "compressor.lora_dropout"),
        ({"target_modules": []}, "compressor.target_modules"),
        ({"target_modules": ["dense", ""]}, "compressor.target_modules"),
        ({"aggregation": "mean"}, "compressor.aggregation"),
    ],
)
def test_bad_settings_name_the_key(params, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_channel(compressor_config("lora", **params))
