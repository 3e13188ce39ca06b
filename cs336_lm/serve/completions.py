"""``POST /v1/completions``: a validated request becomes engine requests, and their outputs the OpenAI answer.

``plan`` turns a ``CompletionRequest`` into one engine request per choice: prompt ``p``'s choice ``j`` is choice
``p·n + j`` of the answer and is sampled with seed ``seed + j`` (so the same prompt and seed give the same text
wherever it sits in a request, and whatever else the server is generating). The default stop ids are the
tokenizer's special tokens, as in ``lm-generate``. ``collect`` gathers a whole answer; ``stream`` yields it as
server-sent events, ``data: {chunk}`` per piece of text of a choice (its ``finish_reason`` set on its last; with
``logprobs``, one per token, carrying that token's piece of the ``logprobs`` object) and ``data: [DONE]`` at the
end. With ``echo`` a choice's first chunk (or its text) starts with the prompt, and with ``logprobs`` its
log-probabilities, which the engine reports with the choice's first token (``ChoiceOutput``). A request the
server aborts at shutdown, or whose generation fails, ends with ``data: {"error": …}`` before ``[DONE]``.
``EventStream`` closes the submission however the response ends, so a client that disconnects mid-stream has its
requests aborted and their KV blocks freed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import LMError, ServeError
from cs336_lm.generation import prompt_problem
from cs336_lm.serve import http_errors, protocol
from cs336_lm.serve.http_errors import body_of
from cs336_lm.serve.logprobs import LegacyLogprobs, merge
from cs336_lm.serve.loop import Output, Submission
from cs336_lm.serve.protocol import CompletionRequest
from cs336_lm.tokenizer import Tokenizer

_DISCONNECT_POLL_S = 1.0


@dataclass(frozen=True)
class ModelInfo:
    """What request handling needs to know of the served model (read-only, shared with the engine thread)."""

    name: str
    context_length: int
    vocab_size: int
    tokenizer: Tokenizer
    stop_ids: tuple[int, ...]
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, engine: Engine, name: str) -> ModelInfo:
        if engine.tokenizer is None:
            raise LMError("the server needs the engine's tokenizer (Engine(model, tokenizer=...))")
        tok = engine.tokenizer
        model = engine.model
        return cls(name, model.context_length, model.vocab_size, tok, tuple(tok.special_token_ids.values()))


@dataclass
class Plan:
    """A request's engine requests, one per choice, and what its answer needs."""

    completion_id: str
    created: int
    prompt_tokens: int  # summed over prompts, each counted once (OpenAI's usage)
    requests: list[tuple[list[int], SamplingParams]]
    echo: list[str] | None = None  # each choice's prompt text, when it comes back in front of the text
    logprobs: bool = False

    def choices(self, vocab: Mapping[int, bytes]) -> list[ChoiceOutput]:
        """A fresh ``ChoiceOutput`` per choice, to build the answer with."""
        return [
            ChoiceOutput(
                ids, None if self.echo is None else self.echo[i], LegacyLogprobs(vocab) if self.logprobs else None
            )
            for i, (ids, _) in enumerate(self.requests)
        ]


class ChoiceOutput:
    """One choice's answer as its outputs arrive: the echoed prompt (and its log-probabilities) ahead of the first
    output's text, then each output's text and, when asked, its token's log-probability."""

    def __init__(self, prompt: list[int], echo: str | None, logprobs: LegacyLogprobs | None):
        self.prompt, self.echo, self.logprobs = prompt, echo, logprobs
        self.started = False

    def take(self, out: Output) -> tuple[str, dict[str, Any] | None]:
        """The text and the ``logprobs`` piece (None when not asked) that ``out`` adds to the choice."""
        text, tokens = out.text, []
        if not self.started:
            self.started = True
            if self.echo is not None:
                text = self.echo + text
                scored = out.prompt_logprobs or [None] * len(self.prompt)
                tokens += list(zip(self.prompt, scored, strict=True))
        if out.logprob is not None:
            tokens.append((out.logprob.token, out.logprob))
        return text, None if self.logprobs is None else self.logprobs.piece(tokens)


def parse(raw: bytes) -> CompletionRequest:
    """The request in a body of JSON, whatever its ``Content-Type`` says (``curl -d`` sends a form's)."""
    try:
        return CompletionRequest.model_validate_json(raw)
    except ValidationError as e:
        raise http_errors.from_validation(e.errors()) from None


def plan(body: CompletionRequest, info: ModelInfo) -> Plan:
    """Check ``body`` against the served model and make its engine requests (``ServeError`` when it cannot be)."""
    if body.model is not None and body.model != info.name:
        raise ServeError(f"the model {body.model!r} does not exist; this server serves {info.name!r}", 404,
                         param="model", code="model_not_found")  # fmt: skip
    unsupported = body.unsupported()
    if unsupported is not None:
        raise ServeError(unsupported[1], 400, param=unsupported[0], code="unsupported_parameter")
    invalid = body.invalid()
    if invalid is not None:
        raise ServeError(invalid[1], 400, param=invalid[0], code="invalid_value")
    raw = _prompts(body.prompt)
    generates = body.max_tokens != 0
    prompts = [_prompt_ids(p, i, info, generates) for i, p in enumerate(raw)]
    base = body.sampling(info.stop_ids)
    n = body.n or 1
    requests = [(ids, _seeded(base, j)) for ids in prompts for j in range(n)]
    echo = None
    if body.echo:
        texts = [p if isinstance(p, str) else info.tokenizer.decode(ids) for p, ids in zip(raw, prompts, strict=True)]
        echo = [text for text in texts for _ in range(n)]
    created = int(time.time())
    return Plan(f"cmpl-{uuid.uuid4().hex}", created, sum(map(len, prompts)), requests, echo, body.logprobs is not None)


def _prompts(prompt: protocol.Prompt) -> list[str | list[int]]:
    """``"a"`` -> ``["a"]``; ``[1, 2]`` -> ``[[1, 2]]``; a list of strings or of id lists as it is."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise ServeError("prompt is an empty list: give at least one prompt", 400, param="prompt")
    if isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)


def _prompt_ids(prompt: str | list[int], index: int, info: ModelInfo, generates: bool = True) -> list[int]:
    ids = info.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    name = "the prompt" if index == 0 else f"prompt {index}"
    problem = prompt_problem(ids, info.context_length, info.vocab_size, name, generates=generates)
    if problem is not None:
        kind, message = problem
        raise ServeError(message, 400, param="prompt", code=None if kind == "empty" else kind)
    return ids


def _seeded(params: SamplingParams, j: int) -> SamplingParams:
    return params if params.seed is None or j == 0 else replace(params, seed=params.seed + j)


# ---- answering ------------------------------------------------------------------------------------------------


async def collect(
    plan: Plan,
    info: ModelInfo,
    submission: Submission,
    request: Request,
    on_output: Callable[[Output], None] | None = None,
) -> dict | None:
    """The whole answer once every choice has finished; None when the client left first (its requests aborted).
    ``on_output`` sees every output as it arrives (the chat route keeps its log-probabilities)."""
    choices = plan.choices(info.tokenizer.vocab)
    texts = ["" for _ in plan.requests]
    pieces: list[list[dict[str, Any]]] = [[] for _ in plan.requests]
    reasons: list[str | None] = [None for _ in plan.requests]
    stops: list[int | str | None] = [None for _ in plan.requests]
    tokens = 0
    next_look = time.monotonic() + _DISCONNECT_POLL_S
    while not submission.done:
        try:
            batch = await asyncio.wait_for(submission.next_batch(), _DISCONNECT_POLL_S)
        except TimeoutError:
            batch = []
        if time.monotonic() >= next_look:  # once a second, whether tokens come or not
            next_look = time.monotonic() + _DISCONNECT_POLL_S
            if await request.is_disconnected():
                return None
        for out in batch:
            if on_output is not None:
                on_output(out)
            text, piece = choices[out.index].take(out)
            texts[out.index] += text
            if piece is not None:
                pieces[out.index].append(piece)
            tokens += out.token
            reasons[out.index] = out.finish_reason or reasons[out.index]
            stops[out.index] = out.stop_reason if out.finish_reason else stops[out.index]
    usage = protocol.usage(plan.prompt_tokens, tokens)
    logprobs = [merge(p) if plan.logprobs else None for p in pieces]
    answers = list(zip(texts, reasons, stops, logprobs, strict=True))
    return protocol.completion_body(plan.completion_id, plan.created, info.name, answers, usage)


async def stream(plan: Plan, info: ModelInfo, submission: Submission, body: CompletionRequest) -> AsyncIterator[bytes]:
    """The answer as server-sent events (see the module docstring); one write per engine step."""
    options = body.stream_options or protocol.StreamOptions()
    chunk = lambda choices, usage=None: protocol.chunk_body(plan.completion_id, plan.created, info.name, choices, usage)
    choices = plan.choices(info.tokenizer.vocab)
    tokens = 0
    while not submission.done:
        try:
            batch = await submission.next_batch()
        except ServeError as e:
            yield _event(body_of(e))
            break
        events = []
        for out in batch:
            tokens += out.token
            text, logprobs = choices[out.index].take(out)
            if text or out.finish_reason is not None or (logprobs is not None and logprobs["tokens"]):
                usage = protocol.usage(plan.prompt_tokens, tokens) if options.continuous_usage_stats else None
                piece = protocol.choice(out.index, text, out.finish_reason, out.stop_reason, logprobs)
                events.append(_event(chunk([piece], usage)))
        if events:
            yield b"".join(events)
    if options.include_usage:
        yield _event(chunk([], protocol.usage(plan.prompt_tokens, tokens)))
    yield b"data: [DONE]\n\n"


def _event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that calls ``on_close`` however it ends (finished, failed, disconnected)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]):
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
