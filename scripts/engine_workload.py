"""The mixed decoding workload the engine and server benchmarks share (``bench_engine.py``, ``bench_serve.py``).

``mixed_workload(n, seed)`` draws ``n`` requests with prompts of 8–200 token ids and outputs of 16–200 tokens
from ``random.Random(seed)``, for a model of vocabulary ``vocab_size`` (random weights are fine: every request
runs exactly its ``max_new_tokens``, with no stop id). ``tiny_run(root)`` writes a run directory holding a
random-weight model of a preset and a byte-level tokenizer grown to the model's vocabulary, so ``lm-serve``,
``lm-generate`` and the engine can all load the same weights. ``start_server(run, *options)`` starts ``lm-serve`` on
it (``bench_serve.py``, ``bench_scoring.py``).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    prompt: list[int]
    max_new_tokens: int


def mixed_workload(n: int = 128, seed: int = 0, vocab_size: int = 10000) -> list[Request]:
    rng = random.Random(seed)
    return [
        Request([rng.randrange(vocab_size) for _ in range(rng.randint(8, 200))], rng.randint(16, 200)) for _ in range(n)
    ]


def tiny_run(root: Path, preset: str = "tinystories-17m", context_length: int = 512, seed: int = 0) -> Path:
    """A run directory (config in the checkpoint, tokenizer/) with a random-weight model of ``preset``."""
    import torch

    from cs336_lm.nn import PRESETS, TransformerLM
    from cs336_lm.run import RunDir
    from cs336_lm.tokenizer import Tokenizer

    shape = {**PRESETS[preset], "context_length": context_length}
    torch.manual_seed(seed)
    model = TransformerLM(**shape)
    # bytes 0..255, then two-byte tokens (each the merge of its bytes) up to the model's vocabulary
    pairs = [(a, b) for a in range(32, 127) for b in range(256)][: shape["vocab_size"] - 256]
    vocab = {i: bytes([i]) for i in range(256)} | {256 + i: bytes(p) for i, p in enumerate(pairs)}
    merges = [(bytes([a]), bytes([b])) for a, b in pairs]
    run = RunDir(root).create()
    Tokenizer(vocab, merges).save(run.tokenizer_dir)
    run.save_checkpoint(model, None, 0, None, config={"model": {**shape, "preset": None}})
    return root


def start_server(run: Path, *options: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, int]:
    """``lm-serve run`` with ``options`` on a free loopback port (``env``: more environment); returns the process,
    its host and port. Its stderr is drained by a thread once it listens, so that it can never block."""
    cmd = [sys.executable, "-m", "cs336_lm.cli.serve", str(run), "--port", "0", "--device", "cpu"]
    cmd += ["--log-level", "warning", *options]
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    proc = subprocess.Popen(cmd, env=environ, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"at http://([\d.]+):(\d+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, found.group(1), int(found.group(2))
        sys.stderr.write(line)
    raise RuntimeError(f"lm-serve exited ({proc.wait()}) before it listened")
