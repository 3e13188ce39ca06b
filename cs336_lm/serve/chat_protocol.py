"""The OpenAI chat completions protocol on the wire: the request schema, the checked conversation, the bodies.

``ChatRequest`` is the body of ``POST /v1/chat/completions``: ``messages`` and the sampling fields of
``CompletionRequest`` (``max_tokens`` or its newer name ``max_completion_tokens``, ``temperature``, ``top_p``,
``top_k``, ``n``, ``stop``, ``seed``, ``repetition_penalty``, ``stream``, ``stream_options``), which
``completion_request`` hands to the completions route's checks unchanged, and ``logprobs`` (true: each token's
log-probability, with the ``top_logprobs`` most likely alternatives, 0 to 20, in the chat format: ``token_entry``).
Without a limit a reply may run to the end of the model's context (as OpenAI's). ``messages`` is checked here
rather than by the schema, so that each problem is a 400 naming the message at fault (``conversation``): a list of
at least one object with a ``role`` (``system``, ``user`` or ``assistant``), a ``content`` (a string, or a list of
``{"type": "text", "text": …}`` parts, joined with newlines) and optionally a ``name``. The penalties and
``logit_bias`` are accepted at their neutral value only. The functions below build the response bodies:

>>> message_choice(0, "Hi!", "stop", 511)["message"]
{'role': 'assistant', 'content': 'Hi!'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cs336_lm.errors import ServeError
from cs336_lm.generation.logprobs import MAX_TOP_LOGPROBS, TokenLogprob
from cs336_lm.serve.logprobs import token_text
from cs336_lm.serve.protocol import FINISH_REASONS, CompletionRequest, SamplingFields, response_body

ROLES = ("system", "user", "assistant")
MESSAGE_FIELDS = ("role", "content", "name")


class ChatRequest(SamplingFields):
    """The body of ``POST /v1/chat/completions``; ``None`` anywhere means the default."""

    messages: list[Any]
    """The conversation so far, oldest first (checked by ``conversation``)."""
    max_completion_tokens: int | None = None
    """Most tokens to generate per choice (OpenAI's newer name for ``max_tokens``; it wins when both are given)."""
    logprobs: bool | None = None
    """Each returned token's log-probability under the model (before temperature, top-k, top-p and the penalty)."""
    top_logprobs: int | None = None
    """0 to 20: the most likely alternatives of each returned token (needs ``logprobs``)."""

    def invalid(self) -> tuple[str, str] | None:
        """``(field, message)`` for a chat-only value that cannot be served, else None (the rest is checked as a
        completions request)."""
        if self.top_logprobs is not None:
            if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
                return "top_logprobs", f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}"
            if not self.logprobs:
                return "top_logprobs", "top_logprobs needs logprobs: true"
        return None


def completion_request(body: ChatRequest, prompt: list[int], context_length: int) -> CompletionRequest:
    """The completions request that generates ``body``'s replies to the rendered ``prompt`` (its checks are ours)."""
    limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    shared = {name: getattr(body, name) for name in SamplingFields.model_fields}
    return CompletionRequest(**{**shared, "max_tokens": context_length if limit is None else limit}, prompt=prompt)


def conversation(messages: list[Any]) -> list[dict[str, str]]:
    """``messages`` as plain ``{"role", "content"[, "name"]}`` dicts for the template; ``ServeError`` (400) naming the
    first message at fault."""
    if not messages:
        raise ServeError("messages is empty: give at least one message", 400, param="messages")
    return [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]


def _message(message: Any, where: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise ServeError(f"{where} must be an object with a role and a content", 400, param=where)
    unknown = next((k for k in message if k not in MESSAGE_FIELDS), None)
    if unknown is not None:
        raise ServeError(f"{where}.{unknown} is not supported (a message has {', '.join(MESSAGE_FIELDS)})", 400,
                         param=f"{where}.{unknown}")  # fmt: skip
    role = message.get("role")
    if role not in ROLES:
        raise ServeError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r:.40}", 400,
                         param=f"{where}.role")  # fmt: skip
    out = {"role": role, "content": _content(message.get("content"), f"{where}.content")}
    name = message.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise ServeError(f"{where}.name must be a string", 400, param=f"{where}.name")
        out["name"] = name
    return out


def _content(content: Any, where: str) -> str:
    """A string as it is; a list of text parts joined with newlines."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else None
    texts = [p.get("text") for p in parts or () if isinstance(p, dict) and p.get("type") == "text"]
    if parts is None or len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        raise ServeError(f"{where} must be a string or a list of text parts ({{\"type\": \"text\", \"text\": …}})",
                         400, param=where)  # fmt: skip
    return "\n".join(texts)  # type: ignore[arg-type]


def token_entry(vocab: Mapping[int, bytes], entry: TokenLogprob) -> dict[str, Any]:
    """A token of a chat answer's ``logprobs.content``: its text (``serve.logprobs.token_text``), log-probability and
    UTF-8 bytes, and its position's ``top_logprobs`` in the same form, most likely first."""

    def named(token: int, logprob: float) -> dict[str, Any]:
        return {"token": token_text(vocab, token), "logprob": logprob, "bytes": list(vocab[token])}

    return {**named(entry.token, entry.logprob), "top_logprobs": [named(t, lp) for t, lp in entry.top]}


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """A choice's (or chunk's) ``logprobs``: ``{"content": [token_entry …], "refusal": None}``; None when not asked."""
    return None if entries is None else {"content": entries, "refusal": None}


def message_choice(
    index: int,
    text: str,
    finish_reason: str | None,
    stop_reason: int | str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict:
    """One whole choice of a ``chat.completion``: the assistant's message and why it ended (``stop_reason`` as in
    ``protocol.choice``), and its tokens' ``token_entry`` when asked."""
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "logprobs": chat_logprobs(logprobs),
        "finish_reason": _reason(finish_reason),
        "stop_reason": stop_reason,
    }


def delta_choice(
    index: int,
    delta: dict[str, str],
    finish_reason: str | None = None,
    stop_reason: int | str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One streamed piece of a choice: ``{"role": "assistant"}`` first, then ``{"content": …}`` (with its token's
    ``token_entry`` when asked), then ``{}`` with the finish reason."""
    choice: dict[str, Any] = {
        "index": index,
        "delta": delta,
        "logprobs": chat_logprobs(logprobs),
        "finish_reason": _reason(finish_reason),
    }
    if finish_reason is not None:
        choice["stop_reason"] = stop_reason
    return choice


def _reason(finish_reason: str | None) -> str | None:
    return None if finish_reason is None else FINISH_REASONS.get(finish_reason, finish_reason)


def chat_body(
    completion_id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, int] | None,
    chunk: bool = False,
) -> dict[str, Any]:
    """A ``chat.completion`` (whole) or ``chat.completion.chunk`` (streamed; ``usage`` only in the last)."""
    kind = "chat.completion.chunk" if chunk else "chat.completion"
    return response_body(kind, completion_id, created, model, choices, usage)
