"""Per-request sampling settings: ``SamplingParams``, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cs336_lm.errors import GenerationError
from cs336_lm.generation.sampling import validate_sampling


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled and when it ends.

    ``temperature`` 0 is greedy (argmax); otherwise the next token is drawn from ``softmax(logits / T)`` after
    ``top_k`` and ``top_p`` filtering. ``repetition_penalty`` (Keskar et al. 2019) divides the positive logits
    and multiplies the negative ones of every token already in the prompt or the output (1.0: off). The request
    ends after ``max_new_tokens`` tokens, at a token of ``stop_ids`` (not output), when the text contains a string
    of ``stop`` (the text ends before it; needs the engine's tokenizer), or when the model's context is full.
    ``seed`` makes the draws reproducible whatever else shares the batch.
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_ids", tuple(self.stop_ids))
        validate_sampling(self.temperature, self.top_k, self.top_p)
        new = self.max_new_tokens
        if isinstance(new, bool) or not isinstance(new, int) or new < 0:
            raise GenerationError(f"max_new_tokens must be an integer >= 0, got {new!r}")
        penalty = self.repetition_penalty
        if not (isinstance(penalty, int | float) and math.isfinite(penalty) and penalty > 0):
            raise GenerationError(f"repetition_penalty must be a finite number > 0, got {penalty!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise GenerationError(f"stop must be non-empty strings, got {self.stop!r}")
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.stop_ids):
            raise GenerationError(f"stop_ids must be token ids (integers >= 0), got {self.stop_ids!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise GenerationError(f"seed must be an integer, got {self.seed!r}")
