"""Small runs and HuggingFace folders for the interop tests, all built here (never from a hub).

``tiny_run`` writes a real run directory: a BPE tokenizer trained on the TinyStories sample (two special tokens),
a random-weight grouped-query model (4 heads, 2 key/value heads) whose vocabulary is the tokenizer's. The module-
scoped fixtures share one run and its export, since loading transformers is the slow part. ``ServeProcess`` runs
``lm-serve`` on a run as a child process, for the tests that talk to it as a client would.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir
from cs336_lm.tokenizer import Tokenizer, train_bpe

REPO = Path(__file__).resolve().parents[2]
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


class ServeProcess:
    """``lm-serve RUN --port 0`` as a child process; its URL read from its startup line; stopped on exit."""

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None):
        if env is None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "cs336_lm.cli.serve", str(run_dir), "--port", "0", "--device", "cpu",
               "--threads", "1"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        started = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                if line.startswith("serving "):
                    self.url = line.split(" at ", 1)[1].split(": the page")[0]
                    started.set()
            started.set()

        threading.Thread(target=read, daemon=True).start()
        if not started.wait(60) or self.url is None:
            self.stop()
            raise AssertionError("lm-serve did not start: " + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
