"""Random request bodies for ``POST /v1/completions`` (and ``/v1/chat/completions``), made by hypothesis: whatever
the JSON (wrong types, huge, negative, NaN and infinite numbers — Python's ``json`` writes ``NaN`` and ``Infinity``
tokens —, unknown fields, nested junk, bytes that are no JSON), the answer is a 200 or a 4xx with OpenAI's error
body, never a 500, and ``/health`` is 200 after it.

The app runs in-process (``TestClient``) on a model of context 32, so a request that is served generates at most
31 tokens per choice, and with ``--max-queue 16``, at most 16 choices.
"""

import json

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cs336_lm.engine import Engine
from cs336_lm.nn import TransformerLM
from cs336_lm.serve import create_app
from cs336_lm.tokenizer import Tokenizer

from .conftest import MODEL_NAME, SHAPE

CONTEXT = 32
FIELDS = [
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed", "repetition_penalty",
    "stream", "stream_options", "user", "echo", "logprobs", "suffix", "presence_penalty", "frequency_penalty",
    "logit_bias", "best_of",
]  # fmt: skip
EDGES = [0, 1, -1, 2, 0.5, 1e-300, 1e-39, 1e-7, 1e7, 1e308, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 3) -> st.SearchStrategy:
    """``common`` ``odds`` times in ``odds + 1``, else ``rare`` (``|`` would draw them half and half)."""
    return st.integers(0, odds).flatmap(lambda k: rare if k == odds else common)


plain = st.text(max_size=12)
texts = mostly(plain, st.sampled_from(["", "\x00", "<|endoftext|>"]))
surrogates = st.sampled_from(["\ud800", "a\udfffb"])  # JSON escapes them; pydantic refuses them
wild_ints = st.integers(-(2**80), 2**80) | st.sampled_from([e for e in EDGES if isinstance(e, int)])
ints = mostly(st.integers(-2, 40), wild_ints, 1)
numbers = mostly(st.floats(0, 2) | st.integers(0, 3), st.floats(allow_nan=True, allow_infinity=True) | wild_ints
                 | st.sampled_from(EDGES), 1)  # fmt: skip
leaves = st.none() | st.booleans() | numbers | texts
junk = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                    max_leaves=10)  # fmt: skip
prompts = mostly(
    plain.map(lambda text: "Once " + text) | st.lists(st.integers(0, 511), min_size=1, max_size=20),
    st.one_of(
        texts,
        surrogates,
        st.lists(st.integers(-3, 515), max_size=40),
        st.lists(texts, max_size=3),
        st.lists(st.lists(st.integers(0, 515), max_size=8), max_size=3),
    ),
    1,
)
typed = {  # values of the field's type, in and out of its range
    "model": st.sampled_from([MODEL_NAME, "gpt-4", ""]),
    "max_tokens": ints,
    "top_k": ints,
    "n": ints,
    "stop": st.one_of(texts, surrogates, st.lists(texts, max_size=18), st.just("x" * 300)),
    "seed": ints,
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries(
        {}, optional={"include_usage": st.booleans(), "continuous_usage_stats": st.booleans()}
    ),
    "user": texts,
    "echo": st.booleans(),
    "logprobs": ints,
    "suffix": texts,
    "logit_bias": st.dictionaries(texts, numbers, max_size=2),
    "best_of": ints,
}
OTHERS = [name for name in FIELDS if name != "prompt"]


def body_with(names: list[str], prompt: bool) -> st.SearchStrategy[dict]:
    """A body setting ``names`` (each to a value of its type, or now and then to junk) and maybe a prompt."""
    fields = {name: mostly(typed.get(name, numbers), junk) for name in names}
    if prompt:
        fields["prompt"] = mostly(prompts, junk)
    return st.fixed_dictionaries(fields)


bodies = st.builds(
    lambda body, extra: {**extra, **body},
    st.tuples(
        st.lists(st.sampled_from(OTHERS), max_size=4, unique=True), mostly(st.just(True), st.just(False), 9)
    ).flatmap(lambda plan: body_with(*plan)),
    mostly(st.just({}), st.dictionaries(texts, junk, min_size=1, max_size=2), 5),  # unknown fields, now and then
)
encoded = bodies.map(lambda body: json.dumps(body, allow_nan=True).encode())
raw_bodies = st.integers(
    0, 9
).flatmap(  # seven in ten a JSON object; one each: other JSON, bytes, a cut object
    lambda k: [
        encoded,
        junk.map(lambda value: json.dumps(value, allow_nan=True).encode()),
        st.binary(max_size=40),
        encoded.map(lambda raw: raw[:-1]),
    ][max(0, k - 6)]
)


@pytest.fixture(scope="module")
def client(tokenizer):
    torch.manual_seed(0)
    model = TransformerLM(**{**SHAPE, "context_length": CONTEXT}).eval()
    app = create_app(Engine(model, tokenizer=tokenizer), model_name=MODEL_NAME, max_queue=16)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check_answer(r, streamed: bool) -> None:
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    if r.status_code != 200:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        return
    if not streamed:
        assert r.json()["object"] == "text_completion"
        return
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert not any("error" in json.loads(e) for e in events[:-1]), r.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=raw_bodies)
def test_a_random_body_is_served_or_refused_with_a_4xx_and_the_server_stays_healthy(client, raw):
    r = client.post("/v1/completions", content=raw)
    try:
        streamed = json.loads(raw).get("stream") is True
    except (ValueError, AttributeError, UnicodeDecodeError):
        streamed = False
    check_answer(r, streamed)
    event(f"{r.status_code} {r.json()['error']['code'] if r.status_code != 200 else 'served'}")
    assert client.get("/health").json() == {"status": "ok"}


# ---- /v1/chat/completions ---------------------------------------------------------------------------------------

REFUSING_TEMPLATE = (  # refuses a conversation that ends with the assistant, as some templates do
    "{% for m in messages %}{% if loop.last and m.role == 'assistant' %}{{ raise_exception('ends with a reply') }}"
    "{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
)
CHAT_FIELDS = ["max_completion_tokens", "top_logprobs", *(f for f in OTHERS if f not in ("echo", "suffix", "best_of"))]
roles = mostly(st.sampled_from(["system", "user", "assistant"]), st.sampled_from(["tool", "developer", ""]) | junk)
contents = mostly(texts, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}), max_size=3) | junk)
message = st.fixed_dictionaries({"role": roles, "content": contents}, optional={"name": mostly(texts, junk)})
messages = st.lists(mostly(message, junk, 9), max_size=4)
chat_typed = {**typed, "max_completion_tokens": ints, "logprobs": st.booleans(), "top_logprobs": ints}
chat_bodies = st.lists(st.sampled_from(CHAT_FIELDS), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries(
        {"messages": mostly(messages, junk, 9), **{n: mostly(chat_typed.get(n, numbers), junk) for n in names}}
    )
)


@pytest.fixture(scope="module")
def chat_client(tokenizer):
    torch.manual_seed(0)
    model = TransformerLM(**{**SHAPE, "context_length": CONTEXT}).eval()
    tok = Tokenizer(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens, chat_template=REFUSING_TEMPLATE)
    app = create_app(Engine(model, tokenizer=tok), model_name=MODEL_NAME, max_queue=16)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=chat_bodies)
def test_a_random_chat_body_is_served_or_refused_with_a_4xx(chat_client, body):
    r = chat_client.post("/v1/chat/completions", content=json.dumps(body, allow_nan=True).encode())
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    if r.status_code != 200:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    elif body.get("stream") is True:
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and not any("error" in json.loads(e) for e in events[:-1]), r.text
    else:
        assert r.json()["object"] == "chat.completion"
    event(f"{r.status_code} {r.json()['error']['code'] if r.status_code != 200 else 'served'}")
    assert chat_client.get("/health").json() == {"status": "ok"}
