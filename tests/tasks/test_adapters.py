"""LoRA adapters (PEFT) on the project's GPT-NeoX: sizes, seeding, FFA-LoRA's exact average.

Also how the federated layer uses them (:func:`fedcomp.flower.setup.build_setup`): what is
trained and sent, the dense baseline, and bad input refused before any engine starts.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from fedcomp.compressors.base import Encoded
from fedcomp.compressors.channel import add, decode_checked, subtract
from fedcomp.compressors.lora import GPT_NEOX_TARGETS, Lora
from fedcomp.compressors.packing import pack, unpack
from fedcomp.core.errors import ConfigError
from fedcomp.engines.launch import execute, prepare
from fedcomp.flower.aggregate import weighted_mean
from fedcomp.flower.setup import build_setup, model_state
from fedcomp.tasks.adapters import add_adapters, factor_names
from fedcomp.tasks.pythia import PythiaTask
from tests.helpers import load_run, run_config
from tests.tasks.test_pythia import TINY

SETTINGS = {"r": 8, "lora_alpha": 16.0, "lora_dropout": 0.0, "target_modules": list(GPT_NEOX_TARGETS)}


def test_pythia14m_adapter_size_comes_from_the_module_shapes():
    base = PythiaTask().build_model()
    targets = {n: m for n, m in base.named_modules() if n.rsplit(".", 1)[-1] in GPT_NEOX_TARGETS}
    assert len(targets) == 24 and all(isinstance(m, nn.Linear) for m in targets.values())
    expected = sum(8 * (m.in_features + m.out_features) for m in targets.values())
    model = add_adapters(base, **SETTINGS, train_a=True, seed=0)
    state = model.state_dict()
    names = factor_names(model)
    assert sum(state[n].numel() for n in names) == expected == 98_304
    assert sum(state[n].numel() * state[n].element_size() for n in names) == 393_216
    # the compressor's naming rule picks exactly PEFT's factors; only they are trainable
    assert {n for n in state if Lora().sends(n)} == names
    assert {n for n, p in model.named_parameters() if p.requires_grad} == names
    base_values = sum(v.numel() for n, v in state.items() if n not in names)
    assert base_values == 14_067_712


def test_adapters_start_as_the_base_model_and_are_seeded():
    task = PythiaTask(config_overrides=TINY)
    torch.manual_seed(0)
    base = task.build_model()
    ids = torch.arange(16).reshape(1, 16)
    before = base(input_ids=ids).logits
    rng = torch.get_rng_state()
    one = add_adapters(base, **SETTINGS, train_a=True, seed=7)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    torch.testing.assert_close(one(input_ids=ids).logits, before)  # B starts at zero
    a_names = sorted(factor_names(one, "A"))
    again = add_adapters(task.build_model(), **SETTINGS, train_a=True, seed=7).state_dict()
    other = add_adapters(task.build_model(), **SETTINGS, train_a=True, seed=8).state_dict()
    for name in a_names:
        assert torch.equal(again[name], one.state_dict()[name])
        assert not torch.equal(other[name], again[name])
    ffa = add_adapters(task.build_model(), **SETTINGS, train_a=False, seed=7)
    assert {n for n, p in ffa.named_parameters() if p.requires_grad} == factor_names(ffa, "B")


def _tiny_config(tmp_path, compressor: str, *overrides: str, **task: object) -> dict:
    cfg = run_config(tmp_path, "task=pythia14m", f"compressor={compressor}", "partition=iid",
                     "federation.num_clients=3", *overrides)
    cfg["task"].update({"config_overrides": dict(TINY), "seq_len": 32, "batch_size": 4, **task})
    return cfg


def _one_round(setup, weights: list[float]) -> tuple[dict, list[dict]]:
    """Three clients train from the round-0 model; the server's weighted FedAvg of what they send."""
    data = setup.task.client_dataset()
    names, initial = setup.sent_names, setup.initial_state
    trained, decoded = [], []
    for client in range(3):
        model = setup.model_with(initial)
        setup.task.train(model, data.shard(3, client), epochs=1, steps=3, seed=client)
        state = model_state(model)
        encoded = setup.channel.compressor.encode(subtract(state, initial, list(initial)), np.random.default_rng(0))
        received = unpack(pack(encoded, setup.spec), setup.spec)  # what the server gets
        decoded.append(decode_checked(setup.channel.compressor, received, initial, names))
        trained.append(state)
    return add(initial, weighted_mean(list(zip(weights, decoded)), names)), trained


def _merged(setup, state: dict) -> dict:
    """The plain model's weights after merging the adapters (``W + scale·B·A``)."""
    return {k: v.numpy() for k, v in setup.model_with(state).merge_and_unload().state_dict().items()}


def _expected(setup, trained: list[dict], weights: list[float], product) -> dict:
    """``W + scale · product(B_i, A_i)`` for each adapted module (the base of round 0)."""
    shares = np.asarray(weights, np.float64) / sum(weights)
    scale = setup.channel.compressor.lora_alpha / setup.channel.compressor.r
    out = {}
    for a_name in (n for n in setup.initial_state if ".lora_A." in n):
        module = a_name.split(".lora_A.")[0]
        b_name = a_name.replace(".lora_A.", ".lora_B.")
        base = setup.initial_state[f"{module}.base_layer.weight"].astype(np.float64)
        factors = [(s[b_name].astype(np.float64), s[a_name].astype(np.float64)) for s in trained]
        out[module.removeprefix("base_model.model.") + ".weight"] = base + scale * product(shares, factors)
    return out


def mean_of_products(shares, factors):
    return sum(s * b @ a for s, (b, a) in zip(shares, factors))


def product_of_means(shares, factors):
    return sum(s * b for s, (b, _) in zip(shares, factors)) @ sum(s * a for s, (_, a) in zip(shares, factors))


def test_ffa_lora_aggregate_equals_base_plus_mean_of_clients_ba(tmp_path):
    setup = build_setup(_tiny_config(tmp_path, "lora_ffa", lr=0.05))
    assert all(".lora_B." in n for n in setup.sent_names)
    weights = [5.0, 3.0, 2.0]
    global_state, trained = _one_round(setup, weights)
    for state in trained:  # A is frozen at its seeded init, the base never moves
        for name in setup.frozen:
            np.testing.assert_array_equal(state[name], setup.initial_state[name])
    merged, base = _merged(setup, global_state), _merged(setup, setup.initial_state)
    expected = _expected(setup, trained, weights, mean_of_products)
    assert len(expected) == 4 * TINY["num_hidden_layers"]
    # the clients did train: a wrong average would show far above the tolerance
    assert max(np.abs(expected[n] - base[n]).max() for n in expected) > 1e-3
    for name, value in expected.items():
        np.testing.assert_allclose(merged[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_averaging_both_factors_is_not_the_mean_of_the_products(tmp_path):
    setup = build_setup(_tiny_config(tmp_path, "lora", lr=0.05))
    weights = [5.0, 3.0, 2.0]
    global_state, trained = _one_round(setup, weights)
    merged = _merged(setup, global_state)
    exact = _expected(setup, trained, weights, mean_of_products)
    assert max(np.abs(merged[n] - exact[n]).max() for n in exact) > 1e-4  # the cross terms
    for name, value in _expected(setup, trained, weights, product_of_means).items():
        np.testing.assert_allclose(merged[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_setup_sends_only_adapters_and_keeps_the_full_model_as_dense_baseline(tmp_path):
    setup = build_setup(_tiny_config(tmp_path, "lora"))
    plain = PythiaTask(config_overrides=TINY).build_model()
    assert setup.dense_bytes == sum(p.numel() * 4 for p in plain.parameters())
    assert set(setup.sent_names) == setup.adapter_names
    assert setup.spec.dense_bytes == sum(setup.initial_state[n].nbytes for n in setup.sent_names)
    encoded = setup.channel.compressor.encode(dict(setup.initial_state), np.random.default_rng(0))
    assert len(pack(encoded, setup.spec)) == setup.spec.dense_bytes + 2
    model = setup.model_with(setup.initial_state)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(setup.sent_names)
    assert decode_checked(setup.channel.compressor, Encoded(encoded.arrays), setup.initial_state,
                          setup.sent_names).keys() == set(setup.sent_names)


def test_any_causal_lm_from_a_local_directory(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    source = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    source.save_pretrained(tmp_path / "llama")
    cfg = _tiny_config(tmp_path, "lora", pretrained_dir=str(tmp_path / "llama"), config_overrides={})
    cfg["compressor"]["target_modules"] = ["q_proj", "v_proj"]
    setup = build_setup(cfg)
    assert type(setup.task.build_model()).__name__ == "LlamaForCausalLM"
    q = "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    np.testing.assert_array_equal(setup.initial_state[q], source.state_dict()["model.layers.0.self_attn.q_proj.weight"])
    assert setup.spec.dense_bytes == 4 * 8 * ((32 + 32) + (32 + 32))  # rank 8 on two 32 × 32 Linears
    global_state, _ = _one_round(setup, [1.0, 1.0, 1.0])
    assert any(not np.array_equal(global_state[n], setup.initial_state[n]) for n in setup.sent_names)
    with pytest.raises(OSError, match=r"task\.pretrained_dir=.*missing"):
        PythiaTask(pretrained_dir=str(tmp_path / "missing")).initial_model()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["task=digits", "compressor=lora"], "compressor=lora.*task=pythia14m"),
        (["task=pythia14m", "compressor=lora", "compressor.target_modules=[query_key_value,attn]"],
         r"compressor\.target_modules: 'attn' matches no module"),
        (["task=pythia14m", "compressor=lora", "compressor.target_modules=[input_layernorm]"],
         r"compressor\.target_modules: .*not supported"),
        (["task=pythia14m", "compressor=lora", "compressor.r=0"], r"compressor\.r"),
    ],
)
def test_bad_input_is_refused_before_any_engine_starts(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        prepare(run_config(tmp_path, *overrides))


def test_cli_exits_2_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fedcomp.run", "task=digits", "compressor=lora", f"hydra.run.dir={tmp_path}"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "compressor=lora" in result.stderr and "task=pythia14m" in result.stderr
    assert not (tmp_path / "ledger.parquet").exists()


def test_federated_run_sends_adapters_both_ways(tmp_path):
    cfg = _tiny_config(tmp_path, "lora_quant8", "engine=inprocess", "federation.num_clients=2",
                       "federation.fraction_fit=1.0", "federation.num_rounds=1")
    cfg["task"].update({"max_pool_bytes": 100_000, "eval_sequences": 4, "steps": 2})
    summary = execute(cfg, echo=lambda line: None)
    ledger, metrics, _ = load_run(tmp_path)
    assert summary["num_failures"] == 0
    setup = build_setup(cfg)
    rows = ledger[ledger.recorded_by == "server"]
    assert (rows.dense_bytes == setup.dense_bytes).all()
    down, up = rows[rows.direction == "down"], rows[rows.direction == "up"]
    assert (down.payload_bytes == setup.spec.dense_bytes + 2).all()  # fp32 adapters, no header
    # 8-bit codes plus a float32 scale and minimum per adapter tensor, plus the packed header
    codes = setup.spec.dense_bytes // 4 + 8 * len(setup.sent_names)
    assert ((up.payload_bytes > codes) & (up.payload_bytes < codes + 400)).all()
    assert metrics[(metrics.scope == "central") & (metrics.metric == "perplexity")]["round"].tolist() == [0, 1]
