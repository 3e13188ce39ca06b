"""Small runs and HuggingFace folders for the interop tests, all built here (never from a hub).

``tiny_run`` writes a real run directory: a BPE tokenizer trained on the TinyStories sample (two special tokens),
a random-weight grouped-query model (4 heads, 2 key/value heads) whose vocabulary is the tokenizer's. The module-
scoped fixtures share one run and its export, since loading transformers is the slow part.
"""

import os
from pathlib import Path

import pytest
import torch

from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir
from cs336_lm.tokenizer import Tokenizer, train_bpe

FIXTURES = Path(os.environ.get("CS336_FIXTURES", Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"))
SPECIALS = ["<|endoftext|>", "<|pad|>"]
SHAPE = {"context_length": 64, "d_model": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "d_ff": 128}


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"fixture {name} not found in {FIXTURES}")
    return path


def trained_tokenizer(vocab_size: int = 420) -> Tokenizer:
    vocab, merges = train_bpe(fixture_path("tinystories_sample.txt"), vocab_size, SPECIALS)
    return Tokenizer(vocab, merges, SPECIALS)


def tiny_run(root: Path, tokenizer: Tokenizer, seed: int = 0, tie: bool = False, **shape) -> Path:
    """A run directory with one checkpoint (step 7) of a random model over ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    config = {**SHAPE, **shape, "vocab_size": tokenizer.vocab_size, "rope_theta": 10000.0}
    model = TransformerLM(**config)
    if tie:
        model.lm_head.weight.data.copy_(model.token_embeddings.weight.data)
    run = RunDir(root).create()
    tokenizer.save(run.tokenizer_dir)
    run.save_checkpoint(model, None, 7, None, config={"model": {**config, "preset": None}})
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch, one_torch_thread):
    """No hub: transformers must find everything in the folders given."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return trained_tokenizer()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tokenizer) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run") / "run", tokenizer)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, run_dir) -> Path:
    from cs336_lm.interop.export import export_run

    out = tmp_path_factory.mktemp("hf") / "hf"
    export_run(run_dir, out)
    return out
