"""Causal language modelling with EleutherAI Pythia-14M's architecture (GPT-NeoX).

Model
-----
``pretrained=False`` (default) builds the model offline from the Pythia-14M config::

    GPTNeoXConfig(hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                  intermediate_size=512, vocab_size=50304, max_position_embeddings=2048,
                  rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False)

14,067,712 parameters = 56,270,848 bytes fp32 (``gpt_neox.embed_in.weight`` and
``lm_head.weight`` hold 6,438,912 each). ``config_overrides`` changes fields of that config
(tests and smoke runs use a tiny one).

``pretrained=True`` loads ``model_name`` (default ``EleutherAI/pythia-14m``) with
``AutoModelForCausalLM.from_pretrained(model_name, local_files_only=True, dtype=float32)``:
from the local Hugging Face cache or a local directory only. Nothing is downloaded unless
``allow_download=True``. A ``checkpoint`` that is a Hugging Face model directory
(``save_pretrained`` output) is loaded the same way, and its ``config.json`` also defines
the architecture clients build; a ``checkpoint`` file is a ``torch.save``d state dict
(``python -m fedcomp.pretrain task=pythia14m`` writes one). ``pretrained_dir`` loads any
causal LM ``transformers`` knows (``AutoModelForCausalLM``) from a local directory,
``local_files_only``; its vocabulary must hold the 256 byte tokens.

Data
----
The Python standard library's own ``.py`` sources shipped with the interpreter
(``sysconfig.get_paths()["stdlib"]``), read as bytes: token id = byte value (0..255,
inside the 50,304-token vocabulary; no tokenizer needed, nothing downloaded). One
top-level module = ``foo.py`` or a package directory ``foo/`` (all its ``.py`` files, test
sub-packages excluded; the ``test`` package, ``site-packages`` and the machine-specific
``_sysconfigdata*`` are left out). A module's files are concatenated in sorted order,
capped at ``max_module_bytes`` and cut into non-overlapping ``seq_len``-token chunks; each
chunk is one example with columns ``input_ids`` (``seq_len`` int32) and ``module``.

Modules are assigned to splits by a stable hash (CRC-32 of the name): ~10% ``test``,
~10% ``public`` (central pretraining), the rest the client ``pool`` (capped at
``max_pool_bytes``). The three splits share no module. ``label_column = "module"``, so the
Dirichlet and pathological partitioners split clients by module (a natural non-IID
split). The corpus depends on the interpreter's version, which ``describe()`` records.

Note: the byte-level tokens are not Pythia's BPE tokens, so ``pretrained=True`` weights
start from a mismatched vocabulary; this task measures bytes moved and the relative
effect of compression, not absolute perplexity of the released model.

Loops
-----
``train``: AdamW; ``steps`` (``client.local_steps``) caps optimizer steps, and when it is
``None`` the task's own ``steps`` (default 5) applies, so a CPU round stays short; set
``task.steps=null`` for full epochs. ``evaluate``: token-averaged cross-entropy ``loss``
and ``perplexity = exp(loss)`` on at most ``eval_sequences`` (default 32) sequences,
evenly spaced through the data given; ``test_dataset()`` holds exactly that many.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import sysconfig
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, List, Value
from torch import nn

from fedcomp.tasks.base import Task
from fedcomp.tasks.checkpoint import is_hf_model_dir, load_checkpoint
from fedcomp.tasks.loops import train_loop

PYTHIA_14M_CONFIG: dict[str, Any] = dict(
    hidden_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=512,
    vocab_size=50304,
    max_position_embeddings=2048,
    rotary_pct=0.25,
    use_parallel_residual=True,
    tie_word_embeddings=False,
)

_EXCLUDED_TOP = {"test", "site-packages", "dist-packages", "__pycache__"}
_EXCLUDED_SUB = {"test", "tests", "idle_test", "__pycache__"}


def _stdlib_modules(root: str) -> dict[str, list[Path]]:
    """Top-level stdlib modules -> their ``.py`` files, all sorted (deterministic)."""
    base = Path(root)
    modules: dict[str, list[Path]] = {}
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        if entry.is_file() and entry.suffix == ".py" and not entry.name.startswith("_sysconfigdata"):
            modules[entry.stem] = [entry]
        elif entry.is_dir() and entry.name not in _EXCLUDED_TOP and (entry / "__init__.py").is_file():
            files: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_SUB)
                files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
            if files:
                modules[entry.name] = sorted(files)
    return modules


def _module_bytes(files: list[Path], cap: int) -> bytes:
    out = bytearray()
    for f in files:
        if len(out) >= cap:
            break
        out += f.read_bytes() + b"\n"
    return bytes(out[:cap])


def _split_of(module: str) -> str:
    bucket = zlib.crc32(module.encode()) % 20
    return "test" if bucket < 2 else "public" if bucket < 4 else "pool"


@functools.lru_cache(maxsize=4)
def _stdlib_corpus(
    root: str, seq_len: int, max_module_bytes: int, max_pool_bytes: int | None
) -> dict[str, Dataset]:
    """Chunk the stdlib sources into ``test`` / ``public`` / ``pool`` (cached per process)."""
    modules = _stdlib_modules(root)
    if not modules:
        raise FileNotFoundError(f"no Python sources found under the stdlib path {root!r}")
    texts = {name: _module_bytes(files, max_module_bytes) for name, files in modules.items()}
    by_split: dict[str, list[str]] = {"test": [], "public": [], "pool": []}
    for name in sorted(texts):
        by_split[_split_of(name)].append(name)
    if max_pool_bytes is not None:
        # drop pool modules in hash order (not alphabetical) until under the cap
        pool = sorted(by_split["pool"], key=lambda m: (zlib.crc32(m.encode()), m))
        total, keep = 0, []
        for m in pool:
            if total + len(texts[m]) <= max_pool_bytes:
                keep.append(m)
                total += len(texts[m])
        by_split["pool"] = sorted(keep)
    features = Features({"input_ids": List(Value("int32"), length=seq_len), "module": Value("string")})
    out: dict[str, Dataset] = {}
    for split, names in by_split.items():
        ids, mods = [], []
        for m in names:
            buf = np.frombuffer(texts[m], dtype=np.uint8)
            n = len(buf) // seq_len
            if n:
                ids.append(buf[: n * seq_len].reshape(n, seq_len).astype(np.int32))
                mods.extend([m] * n)
        arr = np.concatenate(ids) if ids else np.zeros((0, seq_len), np.int32)
        out[split] = Dataset.from_dict({"input_ids": arr, "module": mods}, features=features)
    return out


def _evenly_spaced(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return np.linspace(0, n - 1, k).round().astype(int).tolist()


class PythiaTask(Task):
    """Byte-level causal LM on standard-library sources with Pythia-14M's architecture.

    Parameters
    ----------
    model_name
        Hugging Face model id or local directory used when ``pretrained=True``.
    pretrained
        Load ``model_name``'s weights (local files only unless ``allow_download``).
    allow_download
        Allow ``from_pretrained`` to reach the Hub (off by default: runs never download).
    checkpoint
        A ``torch.save``d state dict or a Hugging Face model directory to start from.
    pretrained_dir
        A local ``save_pretrained`` directory of any causal LM: architecture and weights.
    config_overrides
        Fields replacing those of the Pythia-14M config (e.g. a tiny model for tests).
    lr, weight_decay, batch_size
        AdamW settings and mini-batch size (sequences).
    steps
        Default cap on optimizer steps per ``train`` call when the caller passes none.
    seq_len
        Tokens per example.
    eval_sequences
        Sequences ``evaluate`` uses (evenly spaced); also the size of ``test_dataset()``.
    max_module_bytes, max_pool_bytes
        Corpus caps: bytes per module, bytes of the client pool in total.
    """

    name = "pythia14m"
    label_column = "module"

    def __init__(
        self,
        model_name: str = "EleutherAI/pythia-14m",
        pretrained: bool = False,
        allow_download: bool = False,
        checkpoint: str | None = None,
        pretrained_dir: str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 8,
        steps: int | None = 5,
        seq_len: int = 64,
        eval_sequences: int = 32,
        max_module_bytes: int = 16384,
        max_pool_bytes: int | None = 2_000_000,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"task.batch_size={batch_size} must be >= 1")
        if seq_len < 2:
            raise ValueError(f"task.seq_len={seq_len} must be >= 2")
        if steps is not None and steps < 0:
            raise ValueError(f"task.steps={steps} must be >= 0 or null")
        if eval_sequences < 1:
            raise ValueError(f"task.eval_sequences={eval_sequences} must be >= 1")
        self.model_name = model_name
        self.pretrained = bool(pretrained)
        self.allow_download = bool(allow_download)
        self.checkpoint = checkpoint
        self.pretrained_dir = pretrained_dir
        self.config_overrides = dict(config_overrides or {})
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.steps = None if steps is None else int(steps)
        self.seq_len = int(seq_len)
        self.eval_sequences = int(eval_sequences)
        self.max_module_bytes = int(max_module_bytes)
        self.max_pool_bytes = None if max_pool_bytes is None else int(max_pool_bytes)

    # data -------------------------------------------------------------------------
    def _splits(self) -> dict[str, Dataset]:
        return _stdlib_corpus(
            sysconfig.get_paths()["stdlib"], self.seq_len, self.max_module_bytes, self.max_pool_bytes
        )

    def client_dataset(self) -> Dataset:
        return self._splits()["pool"]

    def public_dataset(self) -> Dataset:
        return self._splits()["public"]

    def test_dataset(self) -> Dataset:
        test = self._splits()["test"]
        return test.select(_evenly_spaced(len(test), self.eval_sequences))

    # model ------------------------------------------------------------------------
    def _source(self) -> tuple[str, str] | None:
        """What ``from_pretrained`` loads (a name or a directory) and its config key, or None."""
        if self.checkpoint and is_hf_model_dir(self.checkpoint):
            return self.checkpoint, "task.checkpoint"
        if self.pretrained_dir:
            return self.pretrained_dir, "task.pretrained_dir"
        return (self.model_name, "task.model_name") if self.pretrained else None

    def _from_pretrained(self, loader: Any, name_or_path: str, key: str, **kwargs: Any) -> Any:
        """``loader.from_pretrained`` from local files (only ``task.model_name`` may download)."""
        local_only = not (self.allow_download and key == "task.model_name")
        try:
            return loader.from_pretrained(name_or_path, local_files_only=local_only, **kwargs)
        except OSError as exc:
            hint = (
                " It is not in the local Hugging Face cache and downloads are off: "
                "download it once (e.g. `hf download EleutherAI/pythia-14m`), pass a local "
                "directory, or set task.allow_download=true."
                if local_only
                else ""
            )
            reason = " ".join(str(exc).split()).rstrip(".")
            raise OSError(f"{key}={name_or_path!r} could not be loaded: {reason}.{hint}") from exc

    def model_config(self):
        """The config clients build: ``_source()``'s (any causal LM) or Pythia-14M's, overridden."""
        from transformers import AutoConfig, GPTNeoXConfig

        source = self._source()
        if source is None:
            config = GPTNeoXConfig(**PYTHIA_14M_CONFIG)
        else:
            config = self._from_pretrained(AutoConfig, *source)
        for key, value in self.config_overrides.items():
            if not hasattr(config, key):
                raise ValueError(f"task.config_overrides.{key} is not a field of {type(config).__name__}")
            setattr(config, key, value)
        return config

    def build_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(self.model_config()).float()

    def initial_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        source = self._source()
        if source is None:
            model = self.build_model()
        else:
            model = self._from_pretrained(AutoModelForCausalLM, *source, dtype=torch.float32)
        if self.checkpoint and not is_hf_model_dir(self.checkpoint):
            load_checkpoint(model, self.checkpoint)
        return model.float()

    # loops ------------------------------------------------------------------------
    def _ids(self, data: Dataset) -> torch.Tensor:
        if len(data) == 0:
            return torch.zeros((0, self.seq_len), dtype=torch.long)
        arr = data.with_format("numpy", columns=["input_ids"])[:]["input_ids"]
        return torch.from_numpy(np.asarray(arr, dtype=np.int64))

    def train(
        self, model: nn.Module, data: Dataset, epochs: int, steps: int | None, seed: int
    ) -> dict[str, float]:
        """AdamW on next-byte prediction; reproducible given ``seed``.

        ``steps`` caps optimizer steps; ``None`` means the task's ``steps`` default.
        """
        cap = self.steps if steps is None else steps
        ids = self._ids(data)
        return train_loop(
            model, len(ids), lambda idx: model(input_ids=ids[idx], labels=ids[idx]).loss,
            lambda params: torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay),
            epochs=epochs, steps=cap, seed=seed, batch_size=self.batch_size,
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Dataset) -> dict[str, float]:
        """Token-averaged next-byte cross-entropy and its exp (perplexity)."""
        if len(data) > self.eval_sequences:
            data = data.select(_evenly_spaced(len(data), self.eval_sequences))
        ids = self._ids(data)
        if len(ids) == 0:
            return {"loss": float("nan"), "perplexity": float("nan"), "num_examples": 0.0}
        model.eval()
        loss_sum, tokens = 0.0, 0
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            n_tok = batch.shape[0] * (batch.shape[1] - 1)  # labels are shifted by one
            loss_sum += float(model(input_ids=batch, labels=batch).loss) * n_tok
            tokens += n_tok
        loss = loss_sum / tokens
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "num_examples": float(len(ids)),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "model_name": self.model_name,
            "pretrained": self.pretrained,
            "pretrained_dir": self.pretrained_dir,
            "config_overrides": dict(self.config_overrides),
            "seq_len": self.seq_len,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "corpus": f"python{sys.version_info.major}.{sys.version_info.minor} stdlib",
        }
