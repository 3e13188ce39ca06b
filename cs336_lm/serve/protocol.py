"""The OpenAI completions protocol on the wire: the request schema and the bodies the server answers with.

``CompletionRequest`` is the body of ``POST /v1/completions`` as OpenAI defines it (``prompt`` a string, a list of
strings, a list of token ids or a list of lists of ids; ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``stop``,
``seed``, ``stream``, ``stream_options``), with the sampling knobs of our engine beside them (``top_k``,
``repetition_penalty``). The schema is strict about types: a string where a number belongs, a float where an
integer belongs or an unknown field fails validation (HTTP 400). Values are checked next, by ``invalid``, with the
engine's own bounds (``cs336_lm.engine.params.params_problem``): a number that cannot be sampled (NaN, infinite,
``repetition_penalty`` 1e-300, …) is a 400 naming the field. Fields OpenAI has and this server does not implement
(``suffix``, penalties, ``logit_bias``, ``best_of``) are accepted at their neutral value only (``unsupported``
names the first that is not; HTTP 400).

``logprobs: N`` (0 to 5) asks for each returned token's log-probability and the ``N`` most likely alternatives
(``cs336_lm.serve.logprobs``), ``echo`` for the prompt in front of the text — with ``logprobs``, its tokens'
log-probabilities too. ``max_tokens: 0`` with ``echo`` generates nothing: the request scores its prompt. The
functions below build the response bodies:

>>> completion_body("cmpl-1", 0, "demo", [("Once", "length", None, None)], usage(3, 1))["choices"][0]
{'text': 'Once', 'index': 0, 'logprobs': None, 'finish_reason': 'length', 'stop_reason': None}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from cs336_lm.engine import SamplingParams
from cs336_lm.engine.params import SEEDS, params_problem

MAX_N = 64
MAX_LOGPROBS = 5
"""OpenAI's bound on ``logprobs`` of the legacy completions."""
MAX_STOP = 16
MAX_STOP_CHARS = 256
"""Looking for a stop string costs up to its length squared per token on the engine thread, which every request
waits for: 16 stop strings of 64 Ki characters would stall it for seconds."""

# the engine's reasons -> OpenAI's: the end of the model's context is a length limit too
FINISH_REASONS = {"stop": "stop", "length": "length", "context": "length"}

Prompt = str | list[str] | list[int] | list[list[int]]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=True)  # NaN: ``invalid`` says which


class StreamOptions(_Strict):
    include_usage: bool = False
    """A last chunk with no choices and the request's ``usage`` (OpenAI)."""
    continuous_usage_stats: bool = False
    """``usage`` so far in every chunk (vLLM's extension; the page uses it for tokens/s)."""


class SamplingFields(_Strict):
    """The fields both request bodies share: the model and how to sample from it."""

    model: str | None = None
    """The served model's name (``GET /v1/models``); omitted: the served model."""
    max_tokens: int | None = None
    """Most tokens to generate per choice; generation also ends at the context's end. Completions: default 16, as
    OpenAI, and 0 (with ``echo``) generates nothing: the answer is the prompt, scored when ``logprobs`` is set.
    Chat: default unlimited (the context's end)."""
    temperature: float | None = None
    """Softmax temperature (default 1); 0 is greedy, else from 1e-6 to 1e6."""
    top_p: float | None = None
    """Nucleus sampling, in (0, 1]: the smallest set of tokens with probability mass >= top_p (default 1: off)."""
    top_k: int | None = None
    """Sample among the k >= 1 most likely tokens only (default: off)."""
    n: int | None = None
    """Choices per prompt, 1 to 64; choice j of a prompt is seeded ``seed + j``."""
    stop: str | list[str] | None = None
    """Up to 16 strings of 1 to 256 characters that end a choice; the text stops before the first."""
    seed: int | None = None
    """Makes sampling reproducible, whatever else the server is generating; from -2**63 to 2**64 - n."""
    repetition_penalty: float | None = None
    """In [0.01, 100]: > 1 discourages tokens already in the prompt or the output (default 1: off)."""
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    """An end-user id (OpenAI); accepted and ignored."""
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None


class CompletionRequest(SamplingFields):
    """The body of ``POST /v1/completions``; ``None`` anywhere means the default."""

    prompt: Prompt
    echo: bool = False
    """The prompt comes back in front of the text (a prompt of token ids as their text)."""
    logprobs: int | None = None
    """0 to 5: each token's log-probability under the model (before temperature, top-k, top-p and the penalty) and
    the ``logprobs`` most likely alternatives; the prompt's tokens too with ``echo`` (the first one's null)."""
    suffix: str | None = None
    best_of: int | None = None

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(self, stop_ids: tuple[int, ...] = ()) -> SamplingParams:
        """The engine's settings for choice 0 (the caller offsets the seed of the others)."""
        return SamplingParams(**self._settings(), stop_ids=stop_ids)

    def _settings(self) -> dict[str, Any]:
        """The fields of ``SamplingParams`` this request sets, OpenAI's defaults for the rest."""
        return {
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_k": self.top_k,
            "top_p": None if self.top_p == 1 else self.top_p,
            "max_new_tokens": 16 if self.max_tokens is None else self.max_tokens,
            "stop": self.stop_strings(),
            "repetition_penalty": 1.0 if self.repetition_penalty is None else self.repetition_penalty,
            "seed": self.seed,
            "logprobs": self.logprobs,
            "prompt_logprobs": self.logprobs if self.echo else None,
        }

    def invalid(self) -> tuple[str, str] | None:
        """``(field, message)`` for the first value that cannot be served (the engine's bounds, ``params_problem``,
        and the server's: n, the stop strings), else None."""
        if self.max_tokens is not None and self.max_tokens < 0:
            return "max_tokens", f"max_tokens must be an integer >= 0, got {self.max_tokens}"
        if self.max_tokens == 0 and not self.echo:
            return "max_tokens", "max_tokens 0 generates nothing: it needs echo (the prompt, scored with logprobs)"
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            return "logprobs", f"logprobs must be an integer from 0 to {MAX_LOGPROBS}, got {self.logprobs}"
        n = 1 if self.n is None else self.n
        if not 1 <= n <= MAX_N:
            return "n", f"n must be an integer from 1 to {MAX_N}, got {n}"
        stops = self.stop_strings()
        if len(stops) > MAX_STOP or not all(0 < len(s) <= MAX_STOP_CHARS for s in stops):
            return "stop", f"stop must be at most {MAX_STOP} strings of 1 to {MAX_STOP_CHARS} characters"
        problem = params_problem(**self._settings())
        if problem is None and self.seed is not None and self.seed + n - 1 not in SEEDS:
            return "seed", f"seed + n - 1 (the seed of the last choice) must be at most 2**64 - 1, got {self.seed}"
        return problem

    def unsupported(self) -> tuple[str, str] | None:
        """``(field, message)`` for the first field set to something this server does not implement, else None."""
        neutral = {
            "suffix": self.suffix is None,
            "presence_penalty": self.presence_penalty in (None, 0),
            "frequency_penalty": self.frequency_penalty in (None, 0),
            "logit_bias": not self.logit_bias,
            "best_of": self.best_of is None or self.best_of == (self.n or 1),
        }
        for name, ok in neutral.items():
            if not ok:
                hint = " (repetition_penalty is)" if name.endswith("_penalty") else ""
                return name, f"{name} is not supported by this server{hint}"
        return None


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def choice(
    index: int,
    text: str,
    finish_reason: str | None,
    stop_reason: int | str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One choice; ``finish_reason`` is the engine's (``context`` reads ``length``), None while it goes on.

    ``stop_reason`` (vLLM's extension) says what ended a ``"stop"``: the stop string, or the id of the special
    token; None otherwise. ``logprobs``: the choice's (or chunk's) ``LegacyLogprobs`` object, when asked for.
    """
    reason = None if finish_reason is None else FINISH_REASONS.get(finish_reason, finish_reason)
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason, "stop_reason": stop_reason}


def completion_body(
    completion_id: str,
    created: int,
    model: str,
    choices: list[tuple[str, str | None, int | str | None, dict[str, Any] | None]],
    usage: dict[str, int],
) -> dict[str, Any]:
    """A whole ``text_completion``: choice i is ``choices[i] = (text, finish reason, stop reason, logprobs)``."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice(i, *parts) for i, parts in enumerate(choices)],
        "usage": usage,
    }


def chunk_body(
    completion_id: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk (``choices`` from ``choice``; empty in the closing usage chunk)."""
    return response_body("text_completion", completion_id, created, model, choices, usage)


def response_body(
    kind: str, completion_id: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None
) -> dict[str, Any]:
    """A response or streamed chunk of object type ``kind``; ``usage`` left out when None."""
    body: dict[str, Any] = {"id": completion_id, "object": kind, "created": created, "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


def model_card(name: str, created: int, context_length: int) -> dict[str, Any]:
    """An entry of ``GET /v1/models`` (``context_length`` is ours: the page reads it)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "cs336_lm", "context_length": context_length}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
