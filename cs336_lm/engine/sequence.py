"""One request as the engine tracks it: its tokens, how many of them have K/V in the pool, its blocks and sampler.

A sequence's ``tokens`` are the prompt followed by everything sampled so far. ``num_computed`` of them have keys
and values in the pool (in the blocks of ``block_table``, in order); the rest are fed through the model at the
next steps — the whole prompt at first (in chunks, as the token budget allows), then one token per step.
Preemption gives the blocks back and sets ``num_computed`` to 0: the tokens stay, and are recomputed when the
sequence runs again, so nothing the request produced is lost and its sampler continues where it was.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from cs336_lm.engine.params import SamplingParams
from cs336_lm.engine.text import StopText


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
    admitted_at: int = -1
    """Scheduler step at which it last started running; the most recent is preempted first."""
    finish_reason: str | None = None

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
