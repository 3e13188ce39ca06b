"""``POST /v1/completions``: a validated request becomes engine requests, and their outputs the OpenAI answer.

``plan`` turns a ``CompletionRequest`` into one engine request per choice: prompt ``p``'s choice ``j`` is choice
``p·n + j`` of the answer and is sampled with seed ``seed + j`` (so the same prompt and seed give the same text
wherever it sits in a request, and whatever else the server is generating). The default stop ids are the
tokenizer's special tokens, as in ``lm-generate``. ``collect`` gathers a whole answer; ``stream`` yields it as
server-sent events, ``data: {chunk}`` per piece of text of a choice (its ``finish_reason`` set on its last) and
``data: [DONE]`` at the end; a request the server aborts at shutdown, or whose generation fails, ends with
``data: {"error": …}`` before ``[DONE]``. ``EventStream`` closes the submission however the response ends, so a
client that disconnects mid-stream has its requests aborted and their KV blocks freed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import LMError, ServeError
from cs336_lm.generation import prompt_problem
from cs336_lm.serve import http_errors, protocol
from cs336_lm.serve.http_errors import body_of
from cs336_lm.serve.loop import Submission
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
    prompts = [_prompt_ids(p, i, info) for i, p in enumerate(_prompts(body.prompt))]
    base = body.sampling(info.stop_ids)
    n = body.n or 1
    requests = [(ids, _seeded(base, j)) for ids in prompts for j in range(n)]
    return Plan(f"cmpl-{uuid.uuid4().hex}", int(time.time()), sum(map(len, prompts)), requests)


def _prompts(prompt: protocol.Prompt) -> list[str | list[int]]:
    """``"a"`` -> ``["a"]``; ``[1, 2]`` -> ``[[1, 2]]``; a list of strings or of id lists as it is."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise ServeError("prompt is an empty list: give at least one prompt", 400, param="prompt")
    if isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)


def _prompt_ids(prompt: str | list[int], index: int, info: ModelInfo) -> list[int]:
    ids = info.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    problem = prompt_problem(
        ids, info.context_length, info.vocab_size, "the prompt" if index == 0 else f"prompt {index}"
    )
    if problem is not None:
        kind, message = problem
        raise ServeError(message, 400, param="prompt", code=None if kind == "empty" else kind)
    return ids


def _seeded(params: SamplingParams, j: int) -> SamplingParams:
    return params if params.seed is None or j == 0 else replace(params, seed=params.seed + j)


# ---- answering ------------------------------------------------------------------------------------------------


async def collect(plan: Plan, info: ModelInfo, submission: Submission, request: Request) -> dict | None:
    """The whole answer once every choice has finished; None when the client left first (its requests aborted)."""
    texts = ["" for _ in plan.requests]
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
            texts[out.index] += out.text
            tokens += out.token
            reasons[out.index] = out.finish_reason or reasons[out.index]
            stops[out.index] = out.stop_reason if out.finish_reason else stops[out.index]
    usage = protocol.usage(plan.prompt_tokens, tokens)
    return protocol.completion_body(
        plan.completion_id, plan.created, info.name, list(zip(texts, reasons, stops, strict=True)), usage
    )


async def stream(plan: Plan, info: ModelInfo, submission: Submission, body: CompletionRequest) -> AsyncIterator[bytes]:
    """The answer as server-sent events (see the module docstring); one write per engine step."""
    options = body.stream_options or protocol.StreamOptions()
    chunk = lambda choices, usage=None: protocol.chunk_body(plan.completion_id, plan.created, info.name, choices, usage)
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
            if out.text or out.finish_reason is not None:
                usage = protocol.usage(plan.prompt_tokens, tokens) if options.continuous_usage_stats else None
                piece = protocol.choice(out.index, out.text, out.finish_reason, out.stop_reason)
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
