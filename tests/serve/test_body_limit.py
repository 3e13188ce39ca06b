"""A body over ``--max-body-bytes`` gets 413 and OpenAI's error JSON in every client, the simple ones included.

Python's ``urllib.request`` sends ``Connection: close`` and its whole body before it reads a byte of the answer, so
a server that answers early and closes leaves it a reset connection instead of the 413. The server reads such a
body to its end (up to 32 MiB, ``DRAIN_BYTES``) before answering; these tests send real bodies of 2 and 30 MiB with
urllib (with a ``Content-Length`` and chunked), httpx and the official ``openai`` client, and, on a raw socket,
check what is not seen through a client: the connection stays usable after a drained 413; beyond 32 MiB, declared
or streamed, the connection is closed instead of read on; a client waiting for ``100 Continue`` is answered at once.
"""

import json
import socket
import time
import urllib.error
import urllib.request

import httpx
import openai
import pytest

from cs336_lm.engine import Engine
from cs336_lm.serve.middleware import DEFAULT_MAX_BODY_BYTES, DRAIN_BYTES

from .conftest import MODEL_NAME, LiveServer

MiB = 1 << 20
SIZES = [2 * MiB, 30 * MiB]


@pytest.fixture(scope="module")
def live(model, tokenizer):
    with LiveServer(Engine(model, tokenizer=tokenizer)) as server:
        yield server


def completion_body(size: int) -> bytes:
    """A completions request of exactly ``size`` bytes: a prompt of "a"s."""
    head, tail = b'{"prompt": "', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def assert_413(status: int, payload: bytes) -> None:
    assert status == 413
    error = json.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "body_too_large"
    assert str(DEFAULT_MAX_BODY_BYTES) in error["message"] and error["type"] == "invalid_request_error"


def assert_healthy(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/health", timeout=10).json() == {"status": "ok"}
    r = httpx.post(f"{live.url}/v1/completions", json={"prompt": "a", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200, r.text


# ---- real clients ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=["2MiB", "30MiB"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_urllib_reads_the_413(live, size, chunked):
    body = completion_body(size)
    # an iterable without a Content-Length goes out chunked (urllib's rule); bytes go out with one
    data = (body[i : i + 64 * 1024] for i in range(0, size, 64 * 1024)) if chunked else body
    request = urllib.request.Request(f"{live.url}/v1/completions", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert request.has_header("Content-length") != chunked  # the framing is the one the case is about
    assert_413(answer.value.code, answer.value.read())
    assert_healthy(live)


@pytest.mark.parametrize("size", SIZES, ids=["2MiB", "30MiB"])
def test_httpx_gets_the_413(live, size):
    r = httpx.post(f"{live.url}/v1/completions", content=completion_body(size), timeout=60)
    assert_413(r.status_code, r.content)
    assert_healthy(live)


def test_the_openai_client_gets_the_413(live):
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.APIStatusError) as failed:
        client.completions.create(model=MODEL_NAME, prompt="a" * (2 * MiB), max_tokens=1)
    assert_413(failed.value.status_code, failed.value.response.content)
    assert_healthy(live)


# ---- on the wire -----------------------------------------------------------------------------------------------


def connect(live: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a whole response head: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_after_a_drained_413_the_connection_serves_the_next_request(live):
    body = completion_body(2 * MiB)
    with connect(live) as sock:
        head = request_head("/v1/completions", {"Content-Length": str(len(body)), "Content-Type": "application/json"})
        sock.sendall(head + body)
        status, headers, payload = read_response(sock)
        assert_413(status, payload)
        assert headers.get("connection", "").lower() != "close"
        small = b'{"prompt": "a", "max_tokens": 2}'
        sock.sendall(request_head("/v1/completions", {"Content-Length": str(len(small))}) + small)
        status, _, payload = read_response(sock)
        assert status == 200 and json.loads(payload)["usage"]["completion_tokens"] <= 2


def test_a_declared_body_beyond_the_drain_bound_is_answered_at_once_and_closed(live):
    with connect(live) as sock:
        sock.sendall(request_head("/v1/completions", {"Content-Length": str(DRAIN_BYTES + 1)}))  # and no body
        status, headers, payload = read_response(sock)
        assert_413(status, payload)
        assert headers["connection"].lower() == "close"
        assert closed_within(sock, 10)
    assert_healthy(live)


def test_a_client_waiting_for_100_continue_gets_the_413_instead(live):
    with connect(live) as sock:
        sock.sendall(request_head("/v1/completions", {"Content-Length": str(2 * MiB), "Expect": "100-continue"}))
        status, headers, payload = read_response(sock)  # a "100 Continue" first would fail the parse of the 413
        assert_413(status, payload)
        assert headers["connection"].lower() == "close"
    assert_healthy(live)


def test_a_streamed_body_beyond_the_drain_bound_is_cut_off(live):
    """Chunks sent without end: the server reads 32 MiB, answers and closes, so sending fails soon after, not
    never. How soon depends on the socket buffers: the client's is kept small, the server's may grow to the
    system's most (32 MiB on Linux by default), hence the bound of three times the drain."""
    piece = b"a" * MiB
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    started = time.monotonic()
    with connect(live) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(request_head("/v1/completions", {"Transfer-Encoding": "chunked"}))
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < 4 * DRAIN_BYTES:
                sock.sendall(chunk)
                sent += len(piece)
    assert DRAIN_BYTES <= sent + len(piece) < 3 * DRAIN_BYTES, sent / MiB
    assert time.monotonic() - started < 30
    assert_healthy(live)
