"""The decoding loop: prompts in, token ids out one step at a time, with a reason for stopping.

``generate`` streams the tokens of one prompt; ``generate_batch`` runs several prompts of different lengths
together as one static batch (left-padded, see ``kv_cache``) and yields one list per step; ``complete``
collects a batch into ``Completion`` s. A sequence stops at the first stop id (which is not yielded; reason
``"stop"``), after ``max_new_tokens`` (``"length"``), or when prompt plus output fill the model's context
(``"context"``).
The finish reasons are the generators' return values. Row ``b`` of a seeded batch samples from its own
generator seeded ``seed + b``, so it produces exactly what ``generate`` produces for that prompt alone with
that seed.
"""

from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from cs336_lm.errors import GenerationError
from cs336_lm.generation.kv_cache import ContiguousKVCache
from cs336_lm.generation.sampling import make_generators, sample_next, validate_sampling
from cs336_lm.nn import TransformerLM

FinishReason = Literal["stop", "length", "context", "abort"]


@dataclass
class Completion:
    """The generated ids of one prompt (stop id excluded), why generation ended and, when a tokenizer decoded
    them, the text (cut before a stop string)."""

    tokens: list[int]
    finish_reason: FinishReason
    text: str | None = None


def check_prompts(prompts: Sequence[Sequence[int]], context_length: int, vocab_size: int) -> None:
    """Raise ``GenerationError`` for no prompts, an empty prompt, an unknown id, or no room left in the context."""
    if not prompts:
        raise GenerationError("no prompts given")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise GenerationError(f"prompt {i} is empty: give at least one token")
        if len(prompt) >= context_length:
            raise GenerationError(
                f"prompt {i} has {len(prompt)} tokens but the model's context is {context_length}, "
                "which leaves no room to generate"
            )
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise GenerationError(f"prompt {i} has token id {bad[0]} outside the vocabulary (size {vocab_size})")


def generate_batch(
    model: TransformerLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Collection[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
) -> Generator[list[int | None], None, list[FinishReason]]:
    """Decode all ``prompts`` together; each step yields one new id per row (None for rows already finished).

    Settings are checked here, before the first step. ``use_cache=False`` re-runs the whole sequence at
    every step instead of reusing cached keys and values (the baseline the cache is measured against).
    """
    validate_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    check_prompts(prompts, model.context_length, model.vocab_size)
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    return _decode(model, [list(p) for p in prompts], max_new_tokens, sampling, frozenset(stop_ids), seed, use_cache)


class _Rows:
    """Per-row bookkeeping of a batch: how many tokens each row may still add, and why each one finished."""

    def __init__(self, lengths: list[int], max_new_tokens: int, context_length: int, stop_ids: frozenset[int]):
        # Row b may add tokens until its prompt plus output fill the context.
        self.budgets = [min(max_new_tokens, context_length - n) for n in lengths]
        self.reasons: list[FinishReason] = ["length" if b == max_new_tokens else "context" for b in self.budgets]
        self.produced = [0] * len(lengths)
        self.done = [b == 0 for b in self.budgets]
        self.stop_ids = stop_ids

    def take(self, sampled: list[int]) -> list[int | None]:
        """Record one sampled id per row; return the ids that are output (None: finished or stop id)."""
        out: list[int | None] = []
        for b, token in enumerate(sampled):
            if self.done[b] or token in self.stop_ids:
                if not self.done[b]:
                    self.done[b], self.reasons[b] = True, "stop"
                out.append(None)
                continue
            out.append(token)
            self.produced[b] += 1
            self.done[b] = self.produced[b] == self.budgets[b]
        return out


def _left_padded(prompts: list[list[int]], columns: int, device: torch.device) -> torch.Tensor:
    """(batch, columns) zeros with each prompt right-aligned at column ``max(len) − 1``."""
    width = max(len(p) for p in prompts)
    tokens = torch.zeros(len(prompts), columns, dtype=torch.long, device=device)
    for b, prompt in enumerate(prompts):
        tokens[b, width - len(prompt) : width] = torch.tensor(prompt, dtype=torch.long)
    return tokens


def _decode(
    model: TransformerLM,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: dict,
    stop_ids: frozenset[int],
    seed: int | None,
    use_cache: bool,
) -> Generator[list[int | None], None, list[FinishReason]]:
    device = model.lm_head.weight.device
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    rows = _Rows(lengths, max_new_tokens, model.context_length, stop_ids)
    steps = max(rows.budgets)
    if steps == 0:
        return rows.reasons
    tokens = _left_padded(prompts, width + steps, device)  # (batch, width + steps)
    cache = ContiguousKVCache(model, len(prompts), width + steps - 1)  # the last sampled token is never fed back
    cache.set_padding(torch.tensor([width - n for n in lengths]))
    generators = make_generators(seed, len(prompts), device)
    with torch.inference_mode():
        logits = model(tokens[:, :width], kv_cache=cache.extend(width))  # prefill: (batch, vocab_size)
    for column in range(width, width + steps):
        with torch.inference_mode():
            next_ids = sample_next(logits, **sampling, generators=generators)
        yield rows.take(next_ids.tolist())
        if all(rows.done):
            break
        with torch.inference_mode():
            tokens[:, column] = next_ids
            if not use_cache:
                cache.reset()  # the baseline: re-run the whole sequence
            logits = model(tokens[:, cache.length : column + 1], kv_cache=cache.extend(column + 1 - cache.length))
    return rows.reasons


def generate(
    model: TransformerLM,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Collection[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
) -> Generator[int, None, FinishReason]:
    """Yield the new token ids of one prompt as they are produced; the return value is the finish reason.

    >>> gen = generate(model, tok.encode("Once upon"), 50, temperature=0.8, top_p=0.9, stop_ids={eot}, seed=0)
    >>> for token in gen: ...          # a `yield from` or StopIteration.value gives "stop" | "length" | "context"
    """
    rows = generate_batch(model, [prompt_ids], max_new_tokens, temperature, top_k, top_p, stop_ids, seed, use_cache)
    return _single_row(rows)


def _single_row(rows: Generator[list[int | None], None, list[FinishReason]]) -> Generator[int, None, FinishReason]:
    """Unwrap a one-row batch: its tokens, then its finish reason as the return value."""
    while True:
        try:
            step = next(rows)
        except StopIteration as end:
            return end.value[0]
        if step[0] is not None:
            yield step[0]


def complete(
    model: TransformerLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Collection[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
) -> list[Completion]:
    """Run ``generate_batch`` to the end and collect each row's tokens and finish reason."""
    rows = generate_batch(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_ids, seed, use_cache)
    tokens: list[list[int]] = [[] for _ in prompts]
    while True:
        try:
            step = next(rows)
        except StopIteration as end:
            return [Completion(t, r) for t, r in zip(tokens, end.value, strict=True)]
        for row, token in zip(tokens, step, strict=True):
            if token is not None:
                row.append(token)
