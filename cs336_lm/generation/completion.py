"""What every decoder and its callers share: a prompt's check, the reasons a sequence ends, and a ``Completion``.

A sequence ends at a stop id (which is not output: ``"stop"``, as is a stop string), after ``max_new_tokens``
(``"length"``), when prompt and output fill the model's context (``"context"``), when it is aborted (``"abort"``),
or when its sampling or decoding failed (``"error"``, that request alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cs336_lm.errors import GenerationError
from cs336_lm.generation.logprobs import TokenLogprob

FinishReason = Literal["stop", "length", "context", "abort", "error"]


@dataclass
class Completion:
    """The generated ids of one prompt (stop id excluded), why generation ended, when a tokenizer decoded them the
    text (cut before a stop string), and what ended a ``"stop"``: the stop id, or the stop string found. With
    ``logprobs`` / ``prompt_logprobs`` asked for, the ``TokenLogprob`` of each generated / prompt token (the
    prompt's first entry None)."""

    tokens: list[int]
    finish_reason: FinishReason
    text: str | None = None
    stop_reason: int | str | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


def prompt_problem(
    prompt: Sequence[object], context_length: int, vocab_size: int, name: str = "the prompt", *, generates: bool = True
) -> tuple[str, str] | None:
    """``(kind, message)`` when ``prompt`` cannot be decoded, else None: it is ``"empty"``, holds an id that is not
    an integer of the vocabulary (``"invalid_token"``), or leaves no room in the context
    (``"context_length_exceeded"``; a prompt that is only scored, ``generates=False``, may fill the context). The
    message names the prompt as ``name``.

    >>> prompt_problem([5, 700], context_length=64, vocab_size=512)[0]
    'invalid_token'
    """
    if not prompt:
        return "empty", f"{name} is empty: give at least one token"
    bad = [t for t in prompt if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size]
    if bad:
        return "invalid_token", f"{name} has token id {bad[0]!r} outside the vocabulary (size {vocab_size})"
    if not generates and len(prompt) > context_length:
        return "context_length_exceeded", (
            f"{name} has {len(prompt)} tokens but the model's context is {context_length}"
        )
    if generates and len(prompt) >= context_length:
        return "context_length_exceeded", (
            f"{name} has {len(prompt)} tokens but the model's context is {context_length}, "
            "which leaves no room to generate"
        )
    return None


def check_prompt(
    prompt: Sequence[object], context_length: int, vocab_size: int, name: str = "the prompt", *, generates: bool = True
) -> list[int]:
    """``prompt`` as a list of token ids, or ``GenerationError`` with ``prompt_problem``'s message."""
    ids = list(prompt)
    problem = prompt_problem(ids, context_length, vocab_size, name, generates=generates)
    if problem is not None:
        raise GenerationError(problem[1])
    return ids  # type: ignore[return-value]
