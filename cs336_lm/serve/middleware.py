"""ASGI middleware in front of the app: counting answers, the API key, and the request-body limit.

From the outside in: ``CountRequests`` records every answer's path and status in ``Metrics``; ``RequireKey``
answers 401 to a request under ``/v1``, ``/tokenize`` or ``/detokenize`` without ``Authorization: Bearer KEY`` (the
page, ``/health`` and ``/metrics`` stay open, as health checks and scrapers expect); ``LimitBody`` answers 413
to a body over the limit, whether its ``Content-Length`` says so or it only turns out so while streaming in, and
otherwise hands the app the body it read followed by the connection's own messages, so a later disconnect is
still seen.

A 413 goes out only once the body has been read to its end (and thrown away), up to ``DRAIN_BYTES`` in all: a
client that sends its whole body before it reads the answer (Python's ``urllib.request``; ``Connection: close``)
would otherwise find the connection reset under it, the answer unread. A body beyond that bound, declared or
streamed, is answered at once, or as soon as the bound is read, with ``Connection: close``; so is one whose
client waits for ``100 Continue`` (``curl`` for large bodies), which sends nothing once it has the 413.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cs336_lm.errors import ServeError
from cs336_lm.serve.http_errors import send_error
from cs336_lm.serve.metrics import Metrics

KNOWN_PATHS = frozenset(
    {"/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}
)
DEFAULT_MAX_BODY_BYTES = 1 << 20
DRAIN_BYTES = 32 << 20
"""How much of a body over the limit is read and discarded before the 413 (or the limit, where that is larger)."""


class CountRequests:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.http_requests[(path, int(message["status"]))] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


class RequireKey:
    def __init__(self, app: ASGIApp, api_key: str, prefixes: tuple[str, ...] = ("/v1", "/tokenize", "/detokenize")):
        self.app, self.expected, self.prefixes = app, f"Bearer {api_key}".encode(), prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization")
        if given is None:
            error = ServeError("missing API key: send 'Authorization: Bearer KEY'", 401, code="missing_api_key")
            return await send_error(send, error)
        if not hmac.compare_digest(given, self.expected):
            return await send_error(send, ServeError("incorrect API key", 401, code="invalid_api_key"))
        await self.app(scope, receive, send)


class LimitBody:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES, drain_bytes: int = DRAIN_BYTES):
        self.app, self.max_bytes, self.drain_bytes = app, max_bytes, max(drain_bytes, max_bytes)

    def _too_large(self) -> ServeError:
        return ServeError(f"the request body is larger than {self.max_bytes} bytes", 413, code="body_too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        declared_size = int(declared) if declared.isdigit() else None
        if declared_size is not None and declared_size > self.max_bytes:
            waits = headers.get(b"expect", b"").lower() == b"100-continue"  # nothing comes before we ask for it
            if waits or declared_size > self.drain_bytes:
                return await send_error(send, self._too_large(), close=True)
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.drain_bytes:
                return await send_error(send, self._too_large(), close=True)
            if size > self.max_bytes:
                chunks.clear()  # from here on read only to be discarded
            else:
                chunks.append(chunk)
        if size > self.max_bytes:
            return await send_error(send, self._too_large())
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
