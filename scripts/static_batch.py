"""The static-batch decoder the engine replaced, kept as the baseline its benchmarks measure against.

A contiguous key/value cache per layer for a batch of left-padded prompts (``ContiguousKVCache``), prefilled once
and then decoded column by column for every row until the longest row is done (``complete_static``); with
``use_cache=False`` every step re-runs the whole sequence instead. Greedy or seeded sampling as the engine does it
(row ``b`` of a seeded batch draws from ``seed + b``), so its tokens equal the engine's. Not part of the package:
``scripts/bench_generate.py`` and ``scripts/bench_engine.py`` import it.
"""

from __future__ import annotations

from collections.abc import Generator

import torch
from jaxtyping import Int
from torch import Tensor

from cs336_lm.generation import Completion, FinishReason
from cs336_lm.generation.sampling import make_generators, sample_next
from cs336_lm.nn import MultiHeadSelfAttention, TransformerLM


def complete_static(
    model: TransformerLM,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int | None = None,
    use_cache: bool = True,
) -> list[Completion]:
    """Decode ``prompts`` as one left-padded static batch and collect each row's tokens and finish reason."""
    tokens: list[list[int]] = [[] for _ in prompts]
    steps = _decode(model, prompts, max_new_tokens, {"temperature": temperature}, frozenset(), seed, use_cache)
    while True:
        try:
            step = next(steps)
        except StopIteration as end:
            return [Completion(t, r) for t, r in zip(tokens, end.value, strict=True)]
        for row, token in zip(tokens, step, strict=True):
            if token is not None:
                row.append(token)


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


class ContiguousKVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_len`` columns.

    ``length`` is the number of columns filled. ``pad`` (set by ``set_padding``) holds each row's number of
    left-padding columns; without it every column of every row is a real token.
    """

    def __init__(self, model: TransformerLM, batch_size: int, max_len: int) -> None:
        weight = model.lm_head.weight
        shape = (batch_size, model.num_kv_heads, max_len, model.d_head)
        self.keys = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.values = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0
        self.columns = torch.arange(max_len, device=weight.device)
        self.last_position = model.context_length - 1
        self.pad: Tensor | None = None
        self.positions = self.columns.clamp(max=self.last_position)  # (max_len,), or (batch, max_len) with padding
        self.key_valid: Tensor | None = None  # (batch, max_len): False on padding columns

    def set_padding(self, pad: Int[Tensor, " batch"] | None) -> None:
        """Declare ``pad[b]`` leading filler columns in row ``b`` (None or all zeros: no padding)."""
        if pad is None or not bool(pad.any()):
            self.pad, self.key_valid = None, None
            self.positions = self.columns.clamp(max=self.last_position)
            return
        pad = pad.to(self.columns.device)
        self.pad = pad
        # Padding columns get position 0; columns past a short row's context (fed only after that row has
        # finished, their outputs unused) stay at the last position so RoPE's table is never overrun.
        self.positions = (self.columns[None, :] - pad[:, None]).clamp_(0, self.last_position)  # (batch, max_len)
        self.key_valid = self.columns[None, :] >= pad[:, None]  # (batch, max_len)

    def reset(self) -> None:
        """Forget every cached column (the buffers are reused)."""
        self.length = 0

    def extend(self, new: int) -> ContiguousStep:
        """Reserve the next ``new`` columns of every row and return the view one forward call fills."""
        if new < 1 or self.length + new > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} columns; {self.length} used, {new} more requested")
        step = ContiguousStep(self, self.length, new)
        self.length += new
        return step


class ContiguousStep:
    """``kv_cache`` for one forward over columns ``start … start + new − 1`` of a ``ContiguousKVCache``."""

    def __init__(self, cache: ContiguousKVCache, start: int, new: int) -> None:
        self.cache, self.start, self.stop = cache, start, start + new
        batch = cache.batch_size
        device = cache.columns.device
        if cache.pad is None:
            self.positions = cache.positions[start : self.stop]  # (new,)
            self.mask = None
        else:
            self.positions = cache.positions[:, start : self.stop]  # (batch, new)
            assert cache.key_valid is not None
            # a padding query sees itself (its own column), so that its unused output stays finite
            own = cache.columns[: self.stop] == cache.columns[start : self.stop, None]  # (new, stop)
            self.mask = cache.key_valid[:, None, None, : self.stop] | own  # (batch, 1, new, stop)
        self.last_rows = torch.arange(batch, device=device) * new + (new - 1)  # each row's last new column

    def layer(self, index: int) -> _ContiguousLayer:
        return _ContiguousLayer(self, index)


class _ContiguousLayer:
    def __init__(self, step: ContiguousStep, index: int) -> None:
        self.step, self.index = step, index

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention: MultiHeadSelfAttention) -> Tensor:
        """Write ``k``/``v`` into the reserved columns, then attend over columns ``0 … stop − 1``."""
        step, cache = self.step, self.step.cache
        keys, values = cache.keys[self.index], cache.values[self.index]
        keys[:, :, step.start : step.stop] = k
        values[:, :, step.start : step.stop] = v
        return attention.attend(
            q, keys[:, :, : step.stop], values[:, :, : step.stop], q_offset=step.start, mask=step.mask
        )
