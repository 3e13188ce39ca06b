"""One request as the engine tracks it: its tokens, how many of them have K/V in the pool, its blocks and sampler.

A sequence's ``tokens`` are the prompt followed by everything sampled so far. ``num_computed`` of them have keys
and values in the pool (in the blocks of ``block_table``, in order); the rest are fed through the model at the
next steps — the whole prompt at first (in chunks, as the token budget allows), then one token per step.
Preemption gives the blocks back and sets ``num_computed`` to 0: the tokens stay, and are recomputed when the
sequence runs again, so nothing the request produced is lost and its sampler continues where it was.

A request that asks for its prompt's log-probabilities (``SamplingParams.prompt_logprobs``) collects them in
``prompt_logprobs`` as its prompt chunks go through the model: the logits at position ``p`` score prompt token
``p + 1``. Positions from ``logits_from`` on still need their logits, so they must be computed, not taken from
the prefix cache; a recomputation after preemption keeps what was already scored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from cs336_lm.engine.params import SamplingParams
from cs336_lm.engine.text import StopText
from cs336_lm.generation.logprobs import TokenLogprob


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """The engine's state of one request (see the module docstring)."""

    request_id: int
    tokens: list[int]
    prompt_len: int
    params: SamplingParams
    generator: torch.Generator
    max_len: int
    """The most tokens (prompt + output) it may reach: the model's context, or prompt + max_new_tokens."""
    text: StopText | None = None
    status: Status = Status.WAITING
    num_computed: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    """Hashes of the leading full blocks whose K/V are computed and registered (or shared)."""
    arrived_at: int = 0
    """Scheduler step at which it joined the queue; the longer it waits, the earlier it is admitted."""
    admitted_at: int = -1
    """Scheduler step at which it last started running (-1: never); the most recent is preempted first."""
    finish_reason: str | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    """Log-probabilities of prompt tokens 1, 2, … scored so far (None: not asked for)."""
    prompt_reported: bool = False
    """Whether an event has carried ``prompt_logprobs`` (the first event after the prompt is through)."""

    def __post_init__(self) -> None:
        if self.params.prompt_logprobs is not None and self.prompt_logprobs is None:
            self.prompt_logprobs = []

    @property
    def logits_from(self) -> int:
        """The first position whose logits must be computed to score the prompt; ``len(tokens)`` when none."""
        if self.prompt_logprobs is None or len(self.prompt_logprobs) >= self.prompt_len - 1:
            return len(self.tokens)
        return len(self.prompt_logprobs)

    def scored_positions(self, start: int, count: int) -> range:
        """Positions among ``start … start + count − 1`` whose logits score a prompt token not yet scored."""
        return range(max(start, self.logits_from), min(start + count, self.prompt_len - 1))

    def report_prompt_logprobs(self) -> list[TokenLogprob | None] | None:
        """The prompt's log-probabilities, ``None`` first (nothing scores the first token), the first time they are
        complete and asked for; None otherwise."""
        if self.prompt_logprobs is None or self.prompt_reported or self.logits_from < len(self.tokens):
            return None
        self.prompt_reported = True
        return [None, *self.prompt_logprobs]

    def advance(self, token: int, context_length: int) -> tuple[bool, str, str | None, int | str | None]:
        """Take the sampled ``token``: whether it joins the output (a stop id ends the request and does not), the
        text it made final, the finish reason (None while the request goes on) and what ended a ``"stop"``."""
        p, text = self.params, self.text
        if token in p.stop_ids:
            return False, text.finish() if text else "", "stop", token
        self.tokens.append(token)
        released = text.feed(token) if text else ""
        if text is not None and text.stopped:
            return True, released, "stop", text.matched
        if len(self.tokens) - self.prompt_len >= p.max_new_tokens:
            reason = "length"
        elif len(self.tokens) >= context_length:
            reason = "context"
        else:
            return True, released, None, None
        return True, released + (text.finish() if text else ""), reason, None

    @property
    def output(self) -> list[int]:
        """The tokens sampled so far."""
        return self.tokens[self.prompt_len :]

    @property
    def num_uncomputed(self) -> int:
        return len(self.tokens) - self.num_computed

    @property
    def in_prefill(self) -> bool:
        """More than one token still lacks K/V: the prompt (or a recomputation) is not through yet."""
        return self.num_uncomputed > 1
