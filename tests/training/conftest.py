"""Tiny training inputs for the trainer tests: a byte-level tokenizer and token files of real English text; and a
forced fp16 overflow.

Byte-level (256 ids + ``<|endoftext|>``) keeps the setup instant and independent of BPE training; the text is
varied enough that a few steps visibly lower the loss.
"""

import math
from pathlib import Path

import pytest
import torch

from cs336_lm.config import load_config
from cs336_lm.data import write_tokens
from cs336_lm.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"

SENTENCES = [
    "Once upon a time there was a little cat who liked to play in the garden.",
    "The dog ran to the park and found a big red ball under a tree.",
    "Lily and her brother made a cake for their mother, and she smiled.",
    "One day the sun was bright and the birds sang a happy song.",
    "Tom was sad because his toy boat was lost, but his friend helped him look.",
]


def story_text(repeats: int) -> str:
    return " ".join(SENTENCES[(i * 3) % len(SENTENCES)] for i in range(repeats)) + "<|endoftext|>"


def write_run_inputs(root: Path) -> dict[str, Path]:
    """A byte-level tokenizer and story token files in ``root``: ``{"train", "val", "tokenizer"}`` paths."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(root / "tokenizer")
    write_tokens(root / "train.npy", tok.encode(story_text(60)), tok.vocab_size)
    write_tokens(root / "val.npy", tok.encode(story_text(12)), tok.vocab_size)
    return {"train": root / "train.npy", "val": root / "val.npy", "tokenizer": root / "tokenizer"}


@pytest.fixture
def run_inputs(tmp_path) -> dict[str, Path]:
    """``{"train", "val", "tokenizer"}`` paths in ``tmp_path/inputs``."""
    return write_run_inputs(tmp_path / "inputs")


def tiny_overrides(inputs: dict[str, Path], out_dir: Path, extra: dict | None = None) -> list[str]:
    """Overrides that shrink configs/debug.yaml to a run of a few seconds on a busy CPU."""
    values = {
        "data.train_path": inputs["train"],
        "data.val_path": inputs["val"],
        "data.tokenizer_dir": inputs["tokenizer"],
        "train.out_dir": out_dir,
        "model.vocab_size": 257,
        "model.context_length": 16,
        "model.d_model": 32,
        "model.num_heads": 2,
        "model.num_layers": 1,
        "model.d_ff": 64,
        "train.batch_size": 4,
        "train.max_steps": 6,
        "train.eval_every": 3,
        "train.eval_batches": 1,
        "train.log_every": 1,
        "train.ckpt_every": 3,
        "train.device": "cpu",
        "train.threads": 1,
        "optim.warmup_iters": 2,
        **(extra or {}),
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def tiny_config(run_inputs):
    """``tiny_config(out_dir, {"train.max_steps": 4})`` -> a resolved Config based on configs/debug.yaml."""

    def make(out_dir: Path, extra: dict | None = None):
        return load_config(DEBUG_CONFIG, tiny_overrides(run_inputs, out_dir, extra))

    return make


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every trainer test trains a tiny model: one intra-op thread (see tests/conftest.py)."""


class InfGradient(torch.autograd.Function):
    """The identity forward; its backward turns the incoming gradient into inf, as a float16 overflow does."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


@pytest.fixture
def force_overflow(monkeypatch):
    """``force_overflow({2, 5})``: the backward of optimizer steps 2 and 5 (1-based) yields inf/nan gradients in every
    micro-batch, while the forward and the loss stay finite (what an fp16 overflow in the backward pass looks like)."""
    from cs336_lm.training import Trainer, trainer

    def install(steps: set[int]) -> None:
        state = {"on": False}
        real_cross_entropy, real_train_step = trainer.cross_entropy, Trainer.train_step

        def cross_entropy(logits, targets):
            loss = real_cross_entropy(logits, targets)
            return InfGradient.apply(loss) if state["on"] and torch.is_grad_enabled() else loss

        def train_step(self):
            state["on"] = self.step + 1 in steps
            try:
                return real_train_step(self)
            finally:
                state["on"] = False

        monkeypatch.setattr(trainer, "cross_entropy", cross_entropy)
        monkeypatch.setattr(Trainer, "train_step", train_step)

    return install
