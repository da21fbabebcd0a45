"""Freeze: which names match, what is dropped, zeros on decode, early errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedcomp.compressors.base import DecodeError
from fedcomp.compressors.freeze import Freeze
from tests.helpers import MNIST_SHAPES


def pythia_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of GPTNeoXForCausalLM as Pythia-14M (transformers 5)."""
    h, ff, vocab = 128, 512, 50304
    shapes: dict[str, tuple[int, ...]] = {"gpt_neox.embed_in.weight": (vocab, h)}
    for i in range(6):
        p = f"gpt_neox.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "input_layernorm.bias": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "post_attention_layernorm.bias": (h,),
                p + "attention.query_key_value.weight": (3 * h, h),
                p + "attention.query_key_value.bias": (3 * h,),
                p + "attention.dense.weight": (h, h),
                p + "attention.dense.bias": (h,),
                p + "mlp.dense_h_to_4h.weight": (ff, h),
                p + "mlp.dense_h_to_4h.bias": (ff,),
                p + "mlp.dense_4h_to_h.weight": (h, ff),
                p + "mlp.dense_4h_to_h.bias": (h,),
            }
        )
    shapes["gpt_neox.final_layer_norm.weight"] = (h,)
    shapes["gpt_neox.final_layer_norm.bias"] = (h,)
    shapes["lm_head.weight"] = (vocab, h)
    return shapes


PYTHIA_PATTERNS = ["gpt_neox.embed_in.*", "lm_head.*", "embed_out.*"]  # freeze_embeddings.yaml


def tensors(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {name: g.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}


def test_glob_freezes_the_conv_layers():
    assert Freeze(["conv*"]).frozen_names(list(MNIST_SHAPES)) == {
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"
    }


def test_regex_uses_search():
    frozen = Freeze([r"\.bias$"], syntax="regex").frozen_names(list(MNIST_SHAPES))
    assert frozen == {n for n in MNIST_SHAPES if n.endswith(".bias")}
    assert Freeze(["^fc1"], syntax="regex").frozen_names(list(MNIST_SHAPES)) == {"fc1.weight", "fc1.bias"}


def test_glob_is_case_sensitive_and_whole_name():
    with pytest.raises(ValueError, match="compressor.patterns"):
        Freeze(["CONV*"]).frozen_names(list(MNIST_SHAPES))
    with pytest.raises(ValueError, match="compressor.patterns"):
        Freeze(["weight"]).frozen_names(list(MNIST_SHAPES))


def test_pythia_embeddings_leave_the_non_embedding_parameters():
    shapes = pythia_shapes()
    assert sum(int(np.prod(s)) for s in shapes.values()) == 14_067_712
    frozen = Freeze(PYTHIA_PATTERNS).frozen_names(list(shapes))
    assert frozen == {"gpt_neox.embed_in.weight", "lm_head.weight"}
    left = sum(int(np.prod(s)) for n, s in shapes.items() if n not in frozen)
    assert left == 1_189_888


@pytest.mark.slow
def test_pythia_names_match_the_real_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.GPTNeoXConfig(
        hidden_size=128, num_hidden_layers=6, num_attention_heads=4, intermediate_size=512,
        vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25,
        use_parallel_residual=True, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = transformers.GPTNeoXForCausalLM(config)
    state = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert state == pythia_shapes()


def test_encode_drops_frozen_and_decode_restores_zeros_in_order():
    x = tensors(MNIST_SHAPES)
    x["fc2.bias"] = x["fc2.bias"].astype(np.float64)
    f = Freeze(["conv*"])
    enc = f.encode(x, np.random.default_rng(0))
    assert list(enc.arrays) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert enc.payload_bytes == sum(a.nbytes for n, a in x.items() if not n.startswith("conv"))
    assert enc.meta["frozen"]["conv2.weight"] == {"shape": [64, 32, 3, 3], "dtype": "<f4", "pos": 2}
    dec = f.decode(enc)
    assert list(dec) == list(x)
    for name, a in x.items():
        assert dec[name].shape == a.shape and dec[name].dtype == a.dtype
        if name.startswith("conv"):
            assert not dec[name].any()
        else:
            np.testing.assert_array_equal(dec[name], a)


@pytest.mark.parametrize(
    ("patterns", "message"), [(["bn*"], "match none"), (["*"], "match all")]
)
def test_patterns_matching_none_or_all_raise_in_frozen_names_and_encode(patterns, message):
    f = Freeze(patterns)
    with pytest.raises(ValueError, match=f"compressor.patterns.*{message}"):
        f.frozen_names(list(MNIST_SHAPES))
    with pytest.raises(ValueError, match="compressor.patterns"):
        f.encode(tensors(MNIST_SHAPES), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"patterns": []}, "compressor.patterns"),
        ({"patterns": [""]}, "compressor.patterns"),
        ({"patterns": [3]}, "compressor.patterns"),
        ({"patterns": ["(unclosed"], "syntax": "regex"}, "compressor.patterns"),
        ({"patterns": ["conv*"], "syntax": "sql"}, "compressor.syntax"),
    ],
)
def test_bad_params_raise_value_error_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Freeze(**kwargs)


def test_lone_string_pattern_is_accepted():
    assert Freeze("conv1.*").frozen_names(list(MNIST_SHAPES)) == {"conv1.weight", "conv1.bias"}


def test_corrupt_meta_raises_decode_error_naming_the_tensor():
    f = Freeze(["conv*"])
    enc = f.encode(tensors(MNIST_SHAPES), np.random.default_rng(0))
    enc.meta["frozen"]["conv1.bias"]["shape"] = [-1]
    with pytest.raises(DecodeError, match="conv1.bias"):
        f.decode(enc)
    enc = f.encode(tensors(MNIST_SHAPES), np.random.default_rng(0))
    enc.arrays["conv1.bias"] = np.zeros(32, dtype=np.float32)
    with pytest.raises(DecodeError, match="conv1.bias"):
        f.decode(enc)
    enc = f.encode(tensors(MNIST_SHAPES), np.random.default_rng(0))
    enc.meta["frozen"]["conv1.bias"]["pos"] = 99
    with pytest.raises(DecodeError, match="positions"):
        f.decode(enc)
