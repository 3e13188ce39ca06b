"""Every failure as an OpenAI error body, ``{"error": {"message", "type", "param", "code"}}``, never a traceback.

``install(app)`` registers the handlers: ``ServeError`` keeps its status; ``GenerationError`` (a prompt or setting
the engine refuses) is 400; a body that is not JSON, or JSON that does not fit the schema, is 400 as OpenAI and
vLLM answer it (the field in ``param``, the reason in ``code``); an unknown path is 404 and a wrong method 405;
anything else is a bug, logged with its traceback on the server and answered 500 without one. ``send_error``
answers from an ASGI middleware, before the app is reached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Send

from cs336_lm.errors import LMError, ServeError
from cs336_lm.serve.protocol import error_body

logger = logging.getLogger("cs336_lm.serve")

PROMPT_TYPES = "a string, a list of strings, a list of token ids or a list of lists of token ids"


def body_of(error: ServeError) -> dict[str, Any]:
    kind = "server_error" if error.status >= 500 else "invalid_request_error"
    return error_body(str(error), kind, error.param, error.code)


def response(error: ServeError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(body_of(error), status_code=error.status, headers=headers)


async def send_error(send: Send, error: ServeError, *, close: bool = False) -> None:
    """Answer ``error`` on a raw ASGI connection (for middleware, which runs outside FastAPI's handlers); ``close``
    adds ``Connection: close``, and the server closes the connection after the answer."""
    payload = json.dumps(body_of(error), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def from_validation(errors: Sequence[Any]) -> ServeError:
    """For pydantic's ``errors()`` of a request body: 400, naming the first field at fault (``invalid_json`` when the
    body is not JSON at all)."""
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ServeError(f"the request body is not valid JSON ({detail})", 400, code="invalid_json")
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if not loc:
        return ServeError(f"the request body must be a JSON object with a prompt ({first['msg']})", 400,
                          code="invalid_type")  # fmt: skip
    param = loc[0]
    if param == "prompt" and first.get("type") != "missing":
        return ServeError(f"prompt must be {PROMPT_TYPES}", 400, param="prompt", code="invalid_type")
    if first.get("type") == "extra_forbidden":
        return ServeError(f"unrecognized request argument: {param}", 400, param=param, code="unknown_parameter")
    where = ".".join(loc)
    return ServeError(f"{where}: {first['msg']}", 400, param=param, code=str(first.get("type") or "invalid_value"))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an OpenAI error body."""

    async def serve_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServeError)
        return response(exc)

    async def lm_error(request: Request, exc: Exception) -> JSONResponse:
        return response(ServeError(str(exc), 400))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return response(from_validation(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return response(ServeError(message, exc.status_code))

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return response(ServeError("internal server error (the server log has the details)", 500))

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(LMError, lm_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, bug)
