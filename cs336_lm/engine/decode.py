"""Decoding without managing an engine yourself: ``generate`` streams one prompt's new tokens, ``complete`` runs
many prompts to the end. Both build an ``Engine`` whose pool holds all their prompts at once (nothing is ever
preempted) and step it: there is one decode loop, the engine's.

>>> for token in generate(model, tok.encode("Once upon a time"), 100, temperature=0.8, seed=0):
...     print(tok.decode([token]), end="")
>>> [c.tokens for c in complete(model, [[1, 2, 3], [4, 5]], 20, temperature=0)]
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence

from cs336_lm.engine.engine import Engine
from cs336_lm.engine.params import SamplingParams
from cs336_lm.errors import GenerationError, LMError
from cs336_lm.generation.completion import Completion, FinishReason, check_prompt
from cs336_lm.nn import TransformerLM


def generate(
    model: TransformerLM,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Collection[int] = (),
    seed: int | None = None,
) -> Generator[int, None, FinishReason]:
    """Yield the new token ids of one prompt as they are produced; the return value is the finish reason
    (``"stop"``, ``"length"`` or ``"context"``). Bad settings or a bad prompt raise here, before the first token.

    >>> gen = generate(model, tok.encode("Once upon"), 50, temperature=0.8, top_p=0.9, stop_ids={eot}, seed=0)
    """
    params = SamplingParams(temperature, top_k, top_p, max_new_tokens, stop_ids=tuple(stop_ids), seed=seed)
    engine = _engine_for(model, [prompt_ids], max_new_tokens)
    engine.add_request(prompt_ids, params)
    return _tokens(engine)


def _tokens(engine: Engine) -> Generator[int, None, FinishReason]:
    while True:
        for event in engine.step():
            if event.error is not None:  # its sampling or decoding failed: raise what did, as complete does
                if isinstance(event.error, LMError):
                    raise GenerationError(str(event.error)) from event.error
                raise event.error
            if event.token is not None:
                yield event.token
            if event.finish_reason is not None:
                return event.finish_reason  # type: ignore[return-value]


def complete(
    model: TransformerLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_ids: Collection[int] = (),
    seed: int | None = None,
) -> list[Completion]:
    """Every prompt run to the end, in prompt order; with ``seed``, prompt ``i`` samples from ``seed + i``, so it
    gets exactly what ``generate`` gives it alone with that seed."""
    params = [
        SamplingParams(temperature, top_k, top_p, max_new_tokens, stop_ids=tuple(stop_ids), seed=_row_seed(seed, i))
        for i in range(len(prompts))
    ]
    return _engine_for(model, prompts, max_new_tokens).generate(prompts, params)


def _row_seed(seed: int | None, row: int) -> int | None:
    return None if seed is None else seed + row


def _engine_for(model: TransformerLM, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> Engine:
    """An engine whose pool holds every prompt with its output at once, checking the prompts first."""
    if not prompts:
        raise GenerationError("no prompts given")
    ctx, vocab = model.context_length, model.vocab_size
    names = ["the prompt"] if len(prompts) == 1 else [f"prompt {i}" for i in range(len(prompts))]
    lengths = [len(check_prompt(p, ctx, vocab, name)) for p, name in zip(prompts, names, strict=True)]
    block = 16
    blocks = sum(-(-min(ctx, n + max(max_new_tokens, 0)) // block) for n in lengths)
    return Engine(model, block_size=block, max_kv_tokens=max(1, blocks) * block, max_num_seqs=max(1, len(prompts)))
