"""A small random-weight model in float64 (exact enough that batch composition never changes a token), and the
oracle every decode path is held to: the model's full forward without a cache, one token at a time."""

import pytest
import torch

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.generation.sampling import apply_repetition_penalty, sample_next
from cs336_lm.nn import PRESETS, TransformerLM


def make_model(seed: int = 0, dtype=torch.float64, **overrides) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**{**PRESETS["debug"], **overrides}, dtype=dtype).eval()


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    return make_model()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """The engine runs many tiny forwards: one intra-op thread is faster for them."""


def oracle(model: TransformerLM, prompt: list[int], p: SamplingParams) -> tuple[list[int], list[torch.Tensor]]:
    """The new tokens of ``prompt`` and the logits each was drawn from, by the full forward over every token so far
    (no cache), sampled as the engine samples: argmax when greedy, else from a generator seeded with ``p.seed``."""
    device = model.lm_head.weight.device
    generator = torch.Generator(device=device)
    if p.seed is not None:
        generator.manual_seed(p.seed)
    tokens, rows = list(prompt), []
    while len(tokens) - len(prompt) < p.max_new_tokens and len(tokens) < model.context_length:
        with torch.no_grad():  # not inference mode: the plain projections, not the CPU decoding path's fused copies
            row = model(torch.tensor([tokens], device=device))[0, -1:]  # (1, vocab)
        rows.append(row[0])
        if p.repetition_penalty != 1:
            row = apply_repetition_penalty(row, torch.tensor(tokens, device=device), p.repetition_penalty)
        token = int(sample_next(row, p.temperature, p.top_k, p.top_p, generators=[generator])[0])
        if token in p.stop_ids:
            break
        tokens.append(token)
    return tokens[len(prompt) :], rows


class RecordingEngine(Engine):
    """Keeps, per request, the logits it sampled from (a preempted request's recomputed steps included once)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logits: dict[int, list[torch.Tensor]] = {}

    def _sample(self, logits, seqs):
        for row, seq in zip(logits, seqs, strict=True):
            self.logits.setdefault(seq.request_id, []).append(row.clone())
        return super()._sample(logits, seqs)
