"""PythiaTask: the real Pythia-14M architecture, stdlib byte corpus, offline loading."""

import math

import numpy as np
import pytest
import torch

from fedcomp.tasks.pythia import PythiaTask

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            vocab_size=256, max_position_embeddings=128)


@pytest.fixture(scope="module")
def task():
    return PythiaTask()


@pytest.fixture(scope="module")
def tiny():
    return PythiaTask(config_overrides=TINY, lr=3e-3, batch_size=4, seq_len=32, eval_sequences=8)


def test_pythia14m_sizes(task):
    model = task.build_model()
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == 14_067_712
    assert sum(p.numel() * p.element_size() for p in params.values()) == 56_270_848
    assert all(p.dtype == torch.float32 for p in params.values())
    assert params["gpt_neox.embed_in.weight"].numel() == 6_438_912
    assert params["lm_head.weight"].numel() == 6_438_912
    assert params["lm_head.weight"].data_ptr() != params["gpt_neox.embed_in.weight"].data_ptr()
    # state dict = parameters only (rotary buffers are not persistent)
    assert set(model.state_dict()) == set(params)


def test_corpus_splits(task):
    pool, public, test_full = task.client_dataset(), task.public_dataset(), task._splits()["test"]
    assert task.label_column == "module"
    assert pool.column_names == ["input_ids", "module"]
    assert len(pool) * 64 <= 2_000_000 and len(pool) > 10_000
    mods = [set(d["module"]) for d in (pool, public, test_full)]
    assert not (mods[0] & mods[1]) and not (mods[0] & mods[2]) and not (mods[1] & mods[2])
    assert len(mods[0]) > 50 and len(mods[1]) > 3 and len(mods[2]) > 3
    ids = np.asarray(pool[:100]["input_ids"])
    assert ids.shape == (100, 64) and ids.min() >= 0 and ids.max() < 256
    assert len(task.test_dataset()) == 32
    # deterministic and cached
    assert task.client_dataset() is PythiaTask().client_dataset()
    text = bytes(np.asarray(pool[0]["input_ids"], dtype=np.uint8))
    assert text.decode("utf-8", "replace")  # real source text


def test_train_reduces_loss_and_is_reproducible(tiny):
    data = tiny.client_dataset().select(range(64))
    losses, weights = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = tiny.build_model()
        before = tiny.evaluate(model, data)
        metrics = tiny.train(model, data, epochs=3, steps=None, seed=5)
        after = tiny.evaluate(model, data)
        losses.append((before["loss"], after["loss"]))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    before, after = losses[0]
    assert after < before - 0.05, losses
    assert metrics["num_steps"] == 5  # the task default cap when steps=None
    assert metrics["num_examples"] == 64 and math.isfinite(metrics["train_loss"])
    assert math.isclose(tiny.evaluate(model, data)["perplexity"], math.exp(after), rel_tol=1e-6)


def test_steps_and_frozen_embeddings(tiny):
    torch.manual_seed(0)
    model = tiny.build_model()
    model.gpt_neox.embed_in.weight.requires_grad_(False)
    emb = model.gpt_neox.embed_in.weight.detach().clone()
    head = model.lm_head.weight.detach().clone()
    m = tiny.train(model, tiny.client_dataset().select(range(32)), epochs=1, steps=2, seed=0)
    assert m["num_steps"] == 2
    assert torch.equal(model.gpt_neox.embed_in.weight, emb)
    assert not torch.equal(model.lm_head.weight, head)


def test_evaluate_caps_sequences(tiny):
    torch.manual_seed(0)
    out = tiny.evaluate(tiny.build_model(), tiny.client_dataset().select(range(100)))
    assert out["num_examples"] == 8 and set(out) >= {"loss", "perplexity"}


def test_from_pretrained_directory_offline(tmp_path, tiny):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(3)
    src = GPTNeoXForCausalLM(GPTNeoXConfig(**TINY, rotary_pct=0.25, tie_word_embeddings=False))
    src.save_pretrained(tmp_path / "tiny")
    # checkpoint = a save_pretrained directory: architecture and weights from it
    t = PythiaTask(checkpoint=str(tmp_path / "tiny"), seq_len=32, eval_sequences=4)
    model = t.initial_model()
    assert model.config.hidden_size == 32
    for (k, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b) and b.dtype == torch.float32, k
    assert t.build_model().config.num_hidden_layers == 2  # clients build the same shape
    # pretrained=True with model_name = a local directory (the from_pretrained path)
    t2 = PythiaTask(model_name=str(tmp_path / "tiny"), pretrained=True)
    m2 = t2.initial_model()
    assert torch.equal(m2.lm_head.weight, src.lm_head.weight)
    assert math.isfinite(t.evaluate(model, t.test_dataset())["loss"])


def test_unknown_pretrained_name_fails_offline_with_hint():
    t = PythiaTask(model_name="no-such-org/no-such-model-xyz", pretrained=True)
    with pytest.raises(OSError, match=r"task\.model_name.*allow_download"):
        t.initial_model()


def test_state_dict_checkpoint_into_task(tmp_path, tiny):
    from fedcomp.tasks.checkpoint import save_checkpoint

    torch.manual_seed(4)
    src = tiny.build_model()
    path = save_checkpoint(src, tmp_path / "p.pt")
    t = PythiaTask(config_overrides=TINY, checkpoint=str(path))
    assert torch.equal(t.initial_model().lm_head.weight, src.lm_head.weight)
    wrong = PythiaTask(config_overrides={**TINY, "hidden_size": 64}, checkpoint=str(path))
    with pytest.raises(ValueError, match=r"task\.checkpoint.*shape mismatches"):
        wrong.initial_model()
