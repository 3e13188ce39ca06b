"""The OpenAI completions protocol on the wire: the request schema and the bodies the server answers with.

``CompletionRequest`` is the body of ``POST /v1/completions`` as OpenAI defines it (``prompt`` a string, a list of
strings, a list of token ids or a list of lists of ids; ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``stop``,
``seed``, ``stream``, ``stream_options``), with the sampling knobs of our engine beside them (``top_k``,
``repetition_penalty``). The schema is strict: a string where a number belongs, a float where an integer belongs,
an unknown field or a value out of range fails validation (HTTP 422). Fields OpenAI has and this server does not
implement (``echo``, ``logprobs``, ``suffix``, penalties, ``logit_bias``, ``best_of``) are accepted at their neutral
value only (``unsupported`` names the first that is not; HTTP 400). The functions below build the response bodies:

>>> completion_body("cmpl-1", 0, "demo", [("Once", "length")], usage(3, 1))["choices"][0]
{'text': 'Once', 'index': 0, 'logprobs': None, 'finish_reason': 'length'}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cs336_lm.engine import SamplingParams

MAX_N = 64
MAX_STOP = 16
INT64 = 2**63

# the engine's reasons -> OpenAI's: the end of the model's context is a length limit too
FINISH_REASONS = {"stop": "stop", "length": "length", "context": "length"}

Prompt = str | list[str] | list[int] | list[list[int]]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False
    """A last chunk with no choices and the request's ``usage`` (OpenAI)."""
    continuous_usage_stats: bool = False
    """``usage`` so far in every chunk (vLLM's extension; the page uses it for tokens/s)."""


class CompletionRequest(_Strict):
    """The body of ``POST /v1/completions``; ``None`` anywhere means the default."""

    model: str | None = None
    """The served model's name (``GET /v1/models``); omitted: the served model."""
    prompt: Prompt
    max_tokens: int | None = Field(None, ge=1)
    """Most tokens to generate per choice (default 16, as OpenAI); generation also ends at the context's end."""
    temperature: float | None = Field(None, ge=0)
    """Softmax temperature (default 1); 0 is greedy."""
    top_p: float | None = Field(None, gt=0, le=1)
    """Nucleus sampling: the smallest set of tokens with probability mass >= top_p (default 1: off)."""
    top_k: int | None = Field(None, ge=1)
    """Sample among the k most likely tokens only (default: off)."""
    n: int | None = Field(None, ge=1, le=MAX_N)
    """Choices per prompt; choice j of a prompt is seeded ``seed + j``."""
    stop: str | list[str] | None = None
    """Up to 16 strings that end a choice; the text stops before the first."""
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    """Makes sampling reproducible, whatever else the server is generating."""
    repetition_penalty: float | None = Field(None, gt=0)
    """> 1 discourages tokens already in the prompt or the output (default 1: off)."""
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    """An end-user id (OpenAI); accepted and ignored."""
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    best_of: int | None = None

    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(self, stop_ids: tuple[int, ...] = ()) -> SamplingParams:
        """The engine's settings for choice 0 (the caller offsets the seed of the others)."""
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k,
            top_p=None if self.top_p in (None, 1) else self.top_p,
            max_new_tokens=16 if self.max_tokens is None else self.max_tokens,
            stop=self.stop_strings(),
            repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            seed=self.seed,
            stop_ids=stop_ids,
        )

    def unsupported(self) -> tuple[str, str] | None:
        """``(field, message)`` for the first field set to something this server does not implement, else None."""
        neutral = {
            "echo": self.echo is False,
            "logprobs": self.logprobs is None,
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
        stops = self.stop_strings()
        if len(stops) > MAX_STOP or not all(stops):
            return "stop", f"stop must be at most {MAX_STOP} non-empty strings"
        return None


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    """One choice; ``finish_reason`` is the engine's (``context`` reads ``length``), None while it goes on."""
    reason = None if finish_reason is None else FINISH_REASONS.get(finish_reason, finish_reason)
    return {"text": text, "index": index, "logprobs": None, "finish_reason": reason}


def completion_body(
    completion_id: str, created: int, model: str, choices: list[tuple[str, str | None]], usage: dict[str, int]
) -> dict[str, Any]:
    """A whole ``text_completion``: choice i is ``choices[i] = (text, finish reason)``."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice(i, text, reason) for i, (text, reason) in enumerate(choices)],
        "usage": usage,
    }


def chunk_body(
    completion_id: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk (``choices`` from ``choice``; empty in the closing usage chunk)."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def model_card(name: str, created: int, context_length: int) -> dict[str, Any]:
    """An entry of ``GET /v1/models`` (``context_length`` is ours: the page reads it)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "cs336_lm", "context_length": context_length}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
