"""Per-request sampling settings: ``SamplingParams``, checked when it is made (``params_problem``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from cs336_lm.errors import GenerationError
from cs336_lm.generation.logprobs import MAX_TOP_LOGPROBS
from cs336_lm.generation.sampling import sampling_problem

SEEDS = range(-(2**63), 2**64)
"""What ``torch.Generator.manual_seed`` accepts."""


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled and when it ends.

    ``temperature`` 0 is greedy (argmax); otherwise the next token is drawn from ``softmax(logits / T)`` after
    ``top_k`` and ``top_p`` filtering. ``repetition_penalty`` (Keskar et al. 2019) divides the positive logits
    and multiplies the negative ones of every token already in the prompt or the output (1.0: off). The request
    ends after ``max_new_tokens`` tokens, at a token of ``stop_ids`` (not output), when the text contains a string
    of ``stop`` (the text ends before it; needs the engine's tokenizer), or when the model's context is full.
    ``seed`` makes the draws reproducible whatever else shares the batch. The bounds are ``params_problem``'s.

    ``logprobs`` (0 to ``MAX_TOP_LOGPROBS``; None: off) gives every sampled token's log-probability and that many
    most likely alternatives in its event; ``prompt_logprobs`` the same for the prompt's tokens (all but the first),
    in the event of the first token. They are the model's own distribution, before temperature, top-k, top-p and
    the penalty (``cs336_lm.generation.logprobs``). With ``prompt_logprobs``, ``max_new_tokens`` 0 scores the prompt
    and generates nothing: the request ends (``"length"``) once its prompt has been through the model.
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop_ids: tuple[int, ...] = field(default=())
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    @property
    def scores_only(self) -> bool:
        """Whether the request only scores its prompt: prompt log-probabilities and nothing to generate."""
        return self.max_new_tokens == 0 and self.prompt_logprobs is not None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        for name in ("stop", "stop_ids"):
            value = getattr(self, name)
            if not isinstance(value, Sequence | set | frozenset):
                raise GenerationError(f"{name} must be a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        problem = params_problem(**{f.name: getattr(self, f.name) for f in fields(self)})
        if problem is not None:
            raise GenerationError(problem[1])


def params_problem(
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    stop_ids: Sequence[int] = (),
    logprobs: int | None = None,
    prompt_logprobs: int | None = None,
) -> tuple[str, str] | None:
    """``(field, message)`` for the first of these settings that cannot be sampled, else None.

    The sampling bounds are ``sampling_problem``'s (temperature 0 or in [1e-6, 1e6], top_k >= 1, top_p in
    (0, 1], repetition_penalty in [0.01, 100]); besides: max_new_tokens an integer >= 0, stop non-empty
    strings, stop_ids integers >= 0, seed an integer that ``torch.Generator.manual_seed`` takes (``SEEDS``),
    logprobs and prompt_logprobs None or an integer from 0 to ``MAX_TOP_LOGPROBS``.
    ``SamplingParams`` raises the message; ``lm-serve`` answers it with a 400 naming the field.
    """
    problem = sampling_problem(temperature, top_k, top_p, repetition_penalty)
    if problem is not None:
        return problem
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        return "max_new_tokens", f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}"
    if not all(isinstance(s, str) and s for s in stop):
        return "stop", f"stop must be non-empty strings, got {stop!r}"
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in stop_ids):
        return "stop_ids", f"stop_ids must be token ids (integers >= 0), got {stop_ids!r}"
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed not in SEEDS):
        return "seed", f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}"
    for name, value in (("logprobs", logprobs), ("prompt_logprobs", prompt_logprobs)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS
        ):
            return name, f"{name} must be None or an integer from 0 to {MAX_TOP_LOGPROBS}, got {value!r}"
    return None
