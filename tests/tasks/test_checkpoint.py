"""fedcomp.tasks.checkpoint: strict, atomic, clear errors."""

import os
import stat

import pytest
import torch
from torch import nn

from fedcomp.tasks.checkpoint import load_checkpoint, read_state_dict, save_checkpoint


class Net(nn.Module):
    def __init__(self, hidden=4, extra=False):
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)
        if extra:
            self.fc3 = nn.Linear(2, 2)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    src = Net()
    path = save_checkpoint(src, tmp_path / "sub" / "net.pt")
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044, "atomic write must not leave a 0600 file"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    torch.manual_seed(1)
    dst = Net()
    assert load_checkpoint(dst, path) is dst
    for (ka, a), (kb, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert ka == kb and torch.equal(a, b) and b.dtype == torch.float32


def test_overwrite_is_atomic_replace(tmp_path):
    path = tmp_path / "net.pt"
    save_checkpoint(Net(), path)
    net = Net()
    save_checkpoint(net, path)
    assert torch.equal(read_state_dict(path)["fc1.weight"], net.fc1.weight.detach())


def test_wrapped_and_half_precision_state_dict(tmp_path):
    src = Net()
    torch.save({"state_dict": {k: v.half() for k, v in src.state_dict().items()}}, tmp_path / "w.pt")
    dst = load_checkpoint(Net(), tmp_path / "w.pt")
    assert dst.fc1.weight.dtype == torch.float32
    assert torch.allclose(dst.fc1.weight, src.fc1.weight, atol=1e-2)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"task\.checkpoint"):
        load_checkpoint(Net(), tmp_path / "nope.pt")


def test_missing_and_unexpected_keys(tmp_path):
    save_checkpoint(Net(extra=True), tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"task\.checkpoint.*unexpected keys \[fc3\.weight, fc3\.bias\]"):
        load_checkpoint(Net(), tmp_path / "extra.pt")
    save_checkpoint(Net(), tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"task\.checkpoint.*missing keys \[fc3\.weight, fc3\.bias\]"):
        load_checkpoint(Net(extra=True), tmp_path / "small.pt")


def test_shape_mismatch_names_key(tmp_path):
    save_checkpoint(Net(hidden=8), tmp_path / "wide.pt")
    before = Net()
    target = Net()
    target.load_state_dict(before.state_dict())
    with pytest.raises(ValueError, match=r"shape mismatches \[fc1\.weight: checkpoint \(8, 3\) vs model \(4, 3\)"):
        load_checkpoint(target, tmp_path / "wide.pt")
    # nothing was half-loaded
    assert torch.equal(target.fc2.bias, before.fc2.bias)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"task\.checkpoint.*state dict"):
        load_checkpoint(Net(), tmp_path / "list.pt")


def test_hf_directory_with_tied_weights(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, vocab_size=64, max_position_embeddings=32,
                        tie_word_embeddings=True)
    torch.manual_seed(0)
    src = GPTNeoXForCausalLM(cfg)
    src.save_pretrained(tmp_path / "hf")
    torch.manual_seed(1)
    dst = load_checkpoint(GPTNeoXForCausalLM(cfg), tmp_path / "hf")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
