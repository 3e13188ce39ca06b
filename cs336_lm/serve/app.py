"""The FastAPI app: routes, the engine loop's lifetime, and the middleware around them.

``create_app(engine, model_name=...)`` serves one engine:

    POST /v1/completions   OpenAI completions, whole or streamed (``completions``)
    POST /v1/chat/completions  OpenAI chat completions on the run's chat template (``chat``)
    GET  /v1/models        the one served model; /v1/models/{name} for it alone
    POST /tokenize         a prompt's token ids, their count and the context (vLLM's; ``tokenization``)
    POST /detokenize       token ids back to text (vLLM's)
    GET  /health           200 {"status": "ok"} while the engine loop runs; 503 while shutting down or after a failure
    GET  /metrics          Prometheus text (``metrics``)
    GET  /                 the page to try the model (``static/index.html``)

The engine loop starts with the app's lifespan and stops with it. ``app.state.engine_loop`` is the loop (the
server drains it on shutdown); ``app.state.metrics`` its counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from cs336_lm.engine import Engine
from cs336_lm.errors import ServeError
from cs336_lm.serve import chat, completions, http_errors, protocol, tokenization
from cs336_lm.serve.completions import EventStream, ModelInfo
from cs336_lm.serve.loop import DEFAULT_MAX_QUEUE, EngineLoop
from cs336_lm.serve.metrics import CONTENT_TYPE, Metrics
from cs336_lm.serve.middleware import DEFAULT_MAX_BODY_BYTES, CountRequests, LimitBody, RequireKey


def page_html() -> str:
    """The page served at ``/``, shipped as package data."""
    return resources.files("cs336_lm.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(
    engine: Engine,
    *,
    model_name: str = "model",
    api_key: str | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """An app serving ``engine`` (which must have its tokenizer) as ``model_name``; see the module docstring."""
    info = ModelInfo.of(engine, model_name)
    metrics = Metrics()
    loop = EngineLoop(engine, max_queue=max_queue, metrics=metrics)
    page = page_html()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop.start()
        try:
            yield
        finally:
            loop.stop()

    app = FastAPI(title="cs336_lm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine_loop, app.state.metrics = loop, metrics
    http_errors.install(app)
    _add_routes(app, loop, info, page)
    chat.add_route(app, loop, info)
    app.add_middleware(LimitBody, max_bytes=max_body_bytes)
    if api_key:
        app.add_middleware(RequireKey, api_key=api_key)
    app.add_middleware(CountRequests, metrics=metrics)
    return app


def _add_routes(app: FastAPI, loop: EngineLoop, info: ModelInfo, page: str) -> None:
    """The endpoints of the module docstring, on ``loop`` and ``info``."""

    @app.post("/v1/completions", response_model=None)
    async def create_completion(request: Request) -> Response:
        body = completions.parse(await request.body())
        plan = completions.plan(body, info)
        submission = await loop.submit(plan.requests)
        if body.stream:
            return EventStream(completions.stream(plan, info, submission, body), on_close=submission.close)
        try:
            answer = await completions.collect(plan, info, submission, request)
        finally:
            submission.close()
        return JSONResponse(answer) if answer is not None else Response(status_code=499)

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [_card(info)]}

    @app.get("/v1/models/{name:path}")
    async def retrieve_model(name: str) -> dict:
        if name != info.name:
            raise ServeError(f"the model {name!r} does not exist", 404, param="model", code="model_not_found")
        return _card(info)

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict:
        return tokenization.tokenize(await request.body(), info)

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict:
        return tokenization.detokenize(await request.body(), info)

    @app.get("/health", response_model=None)
    async def health() -> JSONResponse:
        if loop.healthy and not loop.draining:
            return JSONResponse({"status": "ok"})
        status = "draining" if loop.draining else f"engine down: {loop.failure or 'stopped'}"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics")
    async def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(loop.metrics.render(loop.stats, info.name), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)


def _card(info: ModelInfo) -> dict:
    """The model's entry in ``/v1/models``; ``chat_template`` (ours) says whether the run has its own template."""
    card = protocol.model_card(info.name, info.created, info.context_length)
    return {**card, "chat_template": info.tokenizer.chat_template is not None}
