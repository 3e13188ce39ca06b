"""Bad requests get the right status and an OpenAI error body, and the server stays healthy after every one.

The server here has an API key and a 64 KiB body limit; every request sends the key unless the case is about it.
"""

import json

import httpx
import pytest

from cs336_lm.engine import Engine

from .conftest import MODEL_NAME, LiveServer

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded(model, tokenizer):
    engine = Engine(model, tokenizer=tokenizer)
    with LiveServer(engine, api_key=KEY, max_body_bytes=BODY_LIMIT, max_queue=8) as live, httpx.Client(
        base_url=live.url, timeout=30
    ) as http:  # fmt: skip
        yield live, http


def post_json(data, headers=AUTH):
    return {"method": "POST", "url": "/v1/completions", "json": data, "headers": headers}


def post_raw(content, headers=AUTH):
    return {"method": "POST", "url": "/v1/completions", "content": content, "headers": headers}


def oversize_chunks():
    yield b'{"prompt": "'
    for _ in range(80):
        yield b"a" * 1024  # no Content-Length: the limit is found while the body streams in
    yield b'"}'


CASES = [
    # (name, request, status, param, code)
    ("invalid JSON", post_raw(b'{"prompt": "a",'), 400, None, "invalid_json"),
    ("empty body", post_raw(b""), 400, None, "invalid_json"),
    ("not UTF-8", post_raw(b'{"prompt": "\xff\xfe"}'), 400, None, "invalid_json"),
    ("JSON that is no object", post_json([1, 2]), 400, None, "invalid_type"),
    ("no prompt", post_json({"max_tokens": 5}), 400, "prompt", "missing"),
    ("prompt of the wrong type", post_json({"prompt": 5}), 400, "prompt", "invalid_type"),
    ("prompt list mixing ids and text", post_json({"prompt": [1, "a"]}), 400, "prompt", "invalid_type"),
    ("max_tokens 0", post_json({"prompt": "a", "max_tokens": 0}), 400, "max_tokens", "invalid_value"),
    ("max_tokens negative", post_json({"prompt": "a", "max_tokens": -3}), 400, "max_tokens", "invalid_value"),
    ("max_tokens a string", post_json({"prompt": "a", "max_tokens": "10"}), 400, "max_tokens", "int_type"),
    ("temperature < 0", post_json({"prompt": "a", "temperature": -0.5}), 400, "temperature", "invalid_value"),
    ("temperature NaN", post_raw(b'{"prompt": "a", "temperature": NaN}'), 400, "temperature", "invalid_value"),
    ("temperature Infinity", post_raw(b'{"prompt": "a", "temperature": Infinity}'), 400, "temperature", None),
    ("temperature 1e400", post_raw(b'{"prompt": "a", "temperature": 1e400}'), 400, "temperature", None),
    ("temperature 1e7", post_json({"prompt": "a", "temperature": 1e7}), 400, "temperature", "invalid_value"),
    ("temperature 1e-300", post_json({"prompt": "a", "temperature": 1e-300}), 400, "temperature", None),
    ("top_p 0", post_json({"prompt": "a", "top_p": 0}), 400, "top_p", "invalid_value"),
    ("top_p above 1", post_json({"prompt": "a", "top_p": 1.5}), 400, "top_p", "invalid_value"),
    ("top_p NaN", post_raw(b'{"prompt": "a", "top_p": NaN}'), 400, "top_p", "invalid_value"),
    ("top_k 0", post_json({"prompt": "a", "top_k": 0}), 400, "top_k", "invalid_value"),
    ("n 0", post_json({"prompt": "a", "n": 0}), 400, "n", "invalid_value"),
    ("n 65", post_json({"prompt": "a", "n": 65}), 400, "n", "invalid_value"),
    ("repetition_penalty 0", post_json({"prompt": "a", "repetition_penalty": 0}), 400, "repetition_penalty", None),
    (
        "repetition_penalty 1e-300",
        post_json({"prompt": "a", "repetition_penalty": 1e-300}),
        400,
        "repetition_penalty",
        "invalid_value",
    ),
    (
        "repetition_penalty 1e-39",
        post_json({"prompt": "a", "repetition_penalty": 1e-39}),
        400,
        "repetition_penalty",
        "invalid_value",
    ),
    ("repetition_penalty 1e3", post_json({"prompt": "a", "repetition_penalty": 1e3}), 400, "repetition_penalty", None),
    (
        "repetition_penalty -Infinity",
        post_raw(b'{"prompt": "a", "repetition_penalty": -Infinity}'),
        400,
        "repetition_penalty",
        None,
    ),
    ("seed beyond 64 bits", post_json({"prompt": "a", "seed": 2**70}), 400, "seed", "invalid_value"),
    ("seed below -2**63", post_json({"prompt": "a", "seed": -(2**63) - 1}), 400, "seed", None),
    ("seed + n - 1 beyond 64 bits", post_json({"prompt": "a", "seed": 2**64 - 1, "n": 2}), 400, "seed", None),
    ("stream not a bool", post_json({"prompt": "a", "stream": "yes"}), 400, "stream", "bool_type"),
    ("unknown field", post_json({"prompt": "a", "temprature": 0.5}), 400, "temprature", "unknown_parameter"),
    ("empty stop string", post_json({"prompt": "a", "stop": [""]}), 400, "stop", "invalid_value"),
    ("seventeen stop strings", post_json({"prompt": "a", "stop": list("abcdefghijklmnopq")}), 400, "stop", None),
    ("a stop string of 257 characters", post_json({"prompt": "a", "stop": "x" * 257}), 400, "stop", None),
    ("a stop list holding a number", post_json({"prompt": "a", "stop": ["a", 1]}), 400, "stop", None),
    ("suffix (not supported)", post_json({"prompt": "a", "suffix": "b"}), 400, "suffix", "unsupported_parameter"),
    ("logprobs above 5", post_json({"prompt": "a", "logprobs": 9}), 400, "logprobs", "invalid_value"),
    ("logprobs negative", post_json({"prompt": "a", "logprobs": -1}), 400, "logprobs", "invalid_value"),
    ("logprobs a string", post_json({"prompt": "a", "logprobs": "2"}), 400, "logprobs", "int_type"),
    ("max_tokens 0 without echo", post_json({"prompt": "a", "max_tokens": 0, "logprobs": 1}), 400, "max_tokens", None),
    ("echo of mixed prompts", post_json({"prompt": ["a", [1, 2]], "echo": True, "max_tokens": 0}), 400, "prompt", None),
    (
        "scoring a prompt longer than the context",
        post_json({"prompt": "x" * 600, "echo": True, "max_tokens": 0, "logprobs": 1}),
        400,
        "prompt",
        "context_length_exceeded",
    ),
    ("prompt longer than the context", post_json({"prompt": "x" * 600}), 400, "prompt", "context_length_exceeded"),
    ("token id outside the vocabulary", post_json({"prompt": [3, 512]}), 400, "prompt", "invalid_token"),
    ("empty prompt", post_json({"prompt": ""}), 400, "prompt", None),
    ("empty prompt list", post_json({"prompt": []}), 400, "prompt", None),
    ("more choices than the queue", post_json({"prompt": ["a", "b", "c"], "n": 3}), 400, "n", None),
    ("unknown model", post_json({"prompt": "a", "model": "gpt-4"}), 404, "model", "model_not_found"),
    ("no API key", post_json({"prompt": "a"}, headers={}), 401, None, "missing_api_key"),
    (
        "wrong API key",
        post_json({"prompt": "a"}, headers={"Authorization": "Bearer nope"}),
        401,
        None,
        "invalid_api_key",
    ),
    ("models without a key", {"method": "GET", "url": "/v1/models"}, 401, None, "missing_api_key"),
    ("oversize body", post_json({"prompt": "a" * BODY_LIMIT}), 413, None, "body_too_large"),
    ("oversize chunked body", post_raw(oversize_chunks()), 413, None, "body_too_large"),
    ("unknown path", {"method": "GET", "url": "/v1/chat", "headers": AUTH}, 404, None, None),
    ("wrong method", {"method": "GET", "url": "/v1/completions", "headers": AUTH}, 405, None, None),
    (
        "unknown model by name",
        {"method": "GET", "url": "/v1/models/nope", "headers": AUTH},
        404,
        "model",
        "model_not_found",
    ),
]


@pytest.mark.parametrize(("name", "request_args", "status", "param", "code"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_request_gets_its_status_and_an_openai_error(guarded, name, request_args, status, param, code):
    _, http = guarded
    r = http.request(**request_args)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert error["message"] and "Traceback" not in error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    assert http.get("/health").json() == {"status": "ok"}


def test_after_every_bad_request_a_good_one_is_served_and_nothing_is_held(guarded):
    live, http = guarded
    r = http.post("/v1/completions", json={"model": MODEL_NAME, "prompt": "a", "max_tokens": 3}, headers=AUTH)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
    metrics = live.wait_idle()
    statuses = {k: v for k, v in metrics.items() if k.startswith('lm_http_requests_total{path="/v1/completions"')}
    assert sum(statuses.values()) >= len([c for c in CASES if c[1]["url"] == "/v1/completions"])
    assert not any('status="500"' in k for k in metrics)


def test_the_open_endpoints_need_no_key(guarded):
    _, http = guarded
    assert http.get("/health").status_code == 200
    assert http.get("/metrics").status_code == 200
    assert "<textarea" in http.get("/").text


def test_an_error_message_names_the_problem(guarded):
    _, http = guarded
    r = http.post("/v1/completions", json={"prompt": "x" * 600}, headers=AUTH)
    assert "600 tokens" in r.json()["error"]["message"] and "512" in r.json()["error"]["message"]
    r = http.post("/v1/completions", content=json.dumps({"prompt": "a", "temprature": 1}), headers=AUTH)
    assert "temprature" in r.json()["error"]["message"]
