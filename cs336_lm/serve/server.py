"""Running the app under uvicorn: the listening socket, the startup line, and a graceful SIGTERM.

``listen(host, port)`` binds the socket first, so a port in use is a one-line error before anything starts and
port 0 picks a free one. ``Server`` is uvicorn's server with two changes. On shutdown (SIGTERM, SIGINT, or
``should_exit`` set by whoever runs it) it first drains the engine loop: requests in flight get ``grace`` seconds
to finish, new ones are refused with 503, and whatever still runs then is aborted with a final event; only then
does uvicorn close the connections. And it handles the signals itself without re-raising them afterwards, so the
process exits 0 instead of dying of the signal it was sent.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from cs336_lm.errors import LMError
from cs336_lm.serve.loop import EngineLoop

DEFAULT_SHUTDOWN_GRACE_S = 10.0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6); ``LMError`` when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise LMError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Server(uvicorn.Server):
    """uvicorn's server, draining the engine loop before it closes connections (see the module docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        engine_loop: EngineLoop,
        grace: float,
        on_started: Callable[[], None] | None = None,
    ):
        super().__init__(config)
        self.engine_loop = engine_loop
        self.grace = grace
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.engine_loop.begin_drain(self.grace)
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_server(
    app: FastAPI,
    *,
    grace: float = DEFAULT_SHUTDOWN_GRACE_S,
    log_level: str = "info",
    access_log: bool = False,
    on_started: Callable[[], None] | None = None,
) -> Server:
    """A ``Server`` for ``app``; run it with ``server.run(sockets=[listen(host, port)])``."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=int(grace) + 5,  # the drain ends every stream by then; this is a backstop
        timeout_keep_alive=5,
    )
    return Server(config, app.state.engine_loop, grace, on_started)
