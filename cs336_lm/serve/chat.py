"""``POST /v1/chat/completions``: a conversation rendered by the run's chat template, answered by the completions
route's machinery.

``plan`` checks the conversation (``chat_protocol.conversation``), renders it with the tokenizer's chat template as
transformers' ``apply_chat_template`` does with ``add_generation_prompt`` (``cs336_lm.generation.chat_template``;
a run without one gets ``DEFAULT_CHAT_TEMPLATE``), encodes the text (special tokens in it become their ids, as
in transformers) and hands the ids with the request's settings to ``completions.plan``: the same checks, seeds per
choice and engine requests as ``/v1/completions``. Every special token stops a reply, as in completions; so the
template's end-of-turn token (``<|im_end|>`` in ChatML) ends the reply and is not part of it. Under the default
template a reply also ends where the model starts the next turn (``DEFAULT_STOP``). A template that fails on the
conversation (``raise_exception``) is a 400 with its message.

``collect`` is the completions route's, its choices recast as messages; ``stream`` sends ``chat.completion.chunk``
events: per choice a first chunk with ``delta: {"role": "assistant", "content": ""}``, then ``{"content": …}``
pieces, then ``{}`` with the ``finish_reason``; the usage chunk (``stream_options.include_usage``) and
``data: [DONE]`` close it, as in completions. With ``logprobs: true`` every returned token has its entry in the
chat format (``chat_protocol.token_entry``; the engine's ``TokenLogprob``: the model's distribution before any
sampling transform): a whole choice's in ``logprobs.content``, a streamed token's in its own chunk (its
``content`` may be empty while its text is held back). The end-of-turn token that ends a reply is not returned,
and has no entry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from cs336_lm.errors import ChatTemplateError, ServeError
from cs336_lm.generation.chat_template import DEFAULT_STOP, render_chat
from cs336_lm.serve import completions, http_errors, protocol
from cs336_lm.serve.chat_protocol import (
    ChatRequest,
    chat_body,
    completion_request,
    conversation,
    delta_choice,
    message_choice,
    token_entry,
)
from cs336_lm.serve.completions import EventStream, ModelInfo, Plan
from cs336_lm.serve.loop import EngineLoop, Output, Submission


def add_route(app: FastAPI, loop: EngineLoop, info: ModelInfo) -> None:
    """``POST /v1/chat/completions`` on ``loop`` (see the module docstring)."""

    @app.post("/v1/chat/completions", response_model=None)
    async def create_chat_completion(request: Request) -> Response:
        body = parse(await request.body())
        chat_plan = plan(body, info)
        submission = await loop.submit(chat_plan.requests)
        if body.stream:
            return EventStream(stream(chat_plan, info, submission, body), on_close=submission.close)
        try:
            answer = await collect(chat_plan, info, submission, request, bool(body.logprobs))
        finally:
            submission.close()
        return JSONResponse(answer) if answer is not None else Response(status_code=499)


def parse(raw: bytes) -> ChatRequest:
    """The request in a body of JSON (``completions.parse``'s rules)."""
    try:
        return ChatRequest.model_validate_json(raw)
    except ValidationError as e:
        error = http_errors.from_validation(e.errors())
    if error.code == "invalid_type" and error.param is None:  # not an object at all
        raise ServeError("the request body must be a JSON object with messages", 400, code="invalid_type")
    raise error


def plan(body: ChatRequest, info: ModelInfo) -> Plan:
    """The engine requests answering ``body`` (``ServeError`` when it cannot be answered); see the module docstring."""
    invalid = body.invalid()
    if invalid is not None:
        raise ServeError(invalid[1], 400, param=invalid[0], code="invalid_value")
    messages = conversation(body.messages)
    tok = info.tokenizer
    try:
        text = render_chat(tok.chat_template, messages, named_tokens=tok.named_tokens)
    except ChatTemplateError as e:
        raise ServeError(str(e), 400, param="messages", code="chat_template_error") from None
    try:
        out = completions.plan(completion_request(body, tok.encode(text), info.context_length), info)
    except ServeError as e:
        raise _in_chat_terms(e, body) from None
    if tok.chat_template is None:  # the default template's turns end in plain text
        out.requests = [(ids, replace(params, stop=params.stop + DEFAULT_STOP)) for ids, params in out.requests]
    if body.logprobs:  # the chat format's own bound (20), not the legacy completions' (5)
        top = body.top_logprobs or 0
        out.requests = [(ids, replace(params, logprobs=top)) for ids, params in out.requests]
    out.completion_id = "chatcmpl-" + out.completion_id.removeprefix("cmpl-")
    return out


def _in_chat_terms(error: ServeError, body: ChatRequest) -> ServeError:
    """A completions error about the prompt is about the messages; one about max_tokens names the field given."""
    message, param = str(error), error.param
    if param == "prompt":
        message, param = message.replace("the prompt", "the conversation's prompt"), "messages"
    elif param == "max_tokens" and body.max_completion_tokens is not None:
        message, param = message.replace("max_tokens", "max_completion_tokens"), "max_completion_tokens"
    return ServeError(message, error.status, param=param, code=error.code)


async def collect(
    plan: Plan, info: ModelInfo, submission: Submission, request: Request, logprobs: bool = False
) -> dict | None:
    """The whole ``chat.completion`` (with each choice's token log-probabilities when asked); None when the client
    left first."""
    vocab = info.tokenizer.vocab
    entries: list[list[dict]] = [[] for _ in plan.requests]

    def keep(out: Output) -> None:
        if out.logprob is not None:
            entries[out.index].append(token_entry(vocab, out.logprob))

    answer = await completions.collect(plan, info, submission, request, keep if logprobs else None)
    if answer is None:
        return None
    choices = [
        message_choice(c["index"], c["text"], c["finish_reason"], c["stop_reason"], entries[i] if logprobs else None)
        for i, c in enumerate(answer["choices"])
    ]
    return chat_body(plan.completion_id, plan.created, info.name, choices, answer["usage"])


async def stream(plan: Plan, info: ModelInfo, submission: Submission, body: ChatRequest) -> AsyncIterator[bytes]:
    """The answer as ``chat.completion.chunk`` server-sent events (see the module docstring)."""
    options = body.stream_options or protocol.StreamOptions()
    vocab = info.tokenizer.vocab

    def chunk(choices: list[dict], usage: dict[str, int] | None = None) -> bytes:
        return _event(chat_body(plan.completion_id, plan.created, info.name, choices, usage, chunk=True))

    yield b"".join(chunk([delta_choice(i, {"role": "assistant", "content": ""})]) for i in range(len(plan.requests)))
    tokens = 0
    while not submission.done:
        try:
            batch = await submission.next_batch()
        except ServeError as e:
            yield _event(http_errors.body_of(e))
            break
        events = []
        for out in batch:
            tokens += out.token
            usage = protocol.usage(plan.prompt_tokens, tokens) if options.continuous_usage_stats else None
            scored = [token_entry(vocab, out.logprob)] if body.logprobs and out.logprob is not None else None
            if out.text or scored:  # a token whose text is held back still brings its log-probability
                events.append(chunk([delta_choice(out.index, {"content": out.text}, logprobs=scored)], usage))
            if out.finish_reason is not None:
                events.append(chunk([delta_choice(out.index, {}, out.finish_reason, out.stop_reason)], usage))
        if events:
            yield b"".join(events)
    if options.include_usage:
        yield chunk([], protocol.usage(plan.prompt_tokens, tokens))
    yield b"data: [DONE]\n\n"


def _event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
