"""Training throughput of a shape on this machine, measured: what ``lm-scaling plan --dry-run`` turns into an
estimated time per run.

``tokens_per_second`` builds the model on the CPU (fp32, the base config's backends), takes ``warmup`` training
steps on random tokens (forward, cross-entropy, backward, AdamW) and times ``steps`` more; the result is tokens per
second of those steps. It leaves out evaluation, logging and checkpoints, so a real run is a little slower, and it
measures the machine as loaded as it is now.
"""

from __future__ import annotations

import time

import torch

from cs336_lm.nn import ModelArgs, TransformerLM
from cs336_lm.nn import functional as F
from cs336_lm.optim import AdamW


def tokens_per_second(args: ModelArgs, batch_size: int, steps: int = 3, warmup: int = 2, seed: int = 0) -> float:
    """Training tokens per second of ``args`` at ``batch_size`` sequences of its full context (module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TransformerLM.from_args(args)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, args.vocab_size, (batch_size, args.context_length + 1), generator=generator)
    x, y = tokens[:, :-1], tokens[:, 1:]  # (batch, seq) each

    def step() -> None:
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())  # logits (batch·seq, vocab_size)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * x.numel() / (time.perf_counter() - start)
