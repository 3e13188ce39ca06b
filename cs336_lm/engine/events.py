"""What the engine reports: an ``Event`` per request and step, and ``EngineStats``, a snapshot of its load."""

from __future__ import annotations

from dataclasses import dataclass

from cs336_lm.generation.logprobs import TokenLogprob


@dataclass(frozen=True)
class Event:
    """What one step did for one request: the token it produced (None when it ended without one) and the finish
    reason (None while it goes on: ``"stop"``, ``"length"``, ``"context"``, ``"abort"`` or ``"error"``). ``text``
    is the text the token made final (with a tokenizer, else "").
    """

    request_id: int
    token: int | None
    finish_reason: str | None
    text: str = ""
    stop_reason: int | str | None = None
    """What ended a ``"stop"``: the stop id, or the stop string found in the text."""
    error: Exception | None = None
    """What ended an ``"error"``: the exception its sampling, decoding or the step's forward raised."""
    logprob: TokenLogprob | None = None
    """The token's log-probability and the most likely alternatives, when the request asks (``logprobs``)."""
    prompt_logprobs: list[TokenLogprob | None] | None = None
    """Once, in the first event after the prompt is through, when the request asks (``prompt_logprobs``): one entry
    per prompt token, None for the first."""


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's load."""

    running: int
    waiting: int
    blocks_used: int
    blocks_free: int
    block_size: int
    preemptions: int
    steps: int
    kv_tokens: int
    """Tokens whose keys and values the running sequences hold (shared prefix blocks counted once per holder)."""
    kv_bytes: int
    """Memory of the whole pool (allocated once)."""
