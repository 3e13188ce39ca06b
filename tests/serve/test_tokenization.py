"""``POST /tokenize`` and ``POST /detokenize`` in vLLM's shape, against the run's tokenizer and transformers.

On the tiny run's server: a prompt's ids, count and context equal the tokenizer's own ``encode``, its count equals
the ``usage.prompt_tokens`` of a completion of the same prompt, and its ids come back as the same text; ids that
split a character come back as a naive decode here gives them (bytes joined, U+FFFD where they are not UTF-8). On a
server with GPT-2's tokenizer (the shared fixtures), ids, ``token_strs`` and texts equal transformers'
``GPT2Tokenizer`` (``encode``, ``convert_ids_to_tokens``, ``decode``). Bad bodies get their status and OpenAI's
error JSON, the server healthy after each; the API key guards both endpoints.
"""

import json
import random

import httpx
import pytest
import torch

from cs336_lm.engine import Engine
from cs336_lm.nn import TransformerLM
from cs336_lm.tokenizer import Tokenizer

from ..conftest import FIXTURES_DIR
from .conftest import MODEL_NAME, SHAPE, SPECIAL, LiveServer

KEY = "tok-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPTS = [
    "Once upon a time",
    "",
    "Grüße, 世界 🙂\n\ttabs  and   spaces\r\n",
    f"one story{SPECIAL}and the next",
    "x" * 3000,  # longer than the context (512): counted all the same
]


@pytest.fixture(scope="module")
def live(model, tokenizer):
    with LiveServer(Engine(model, tokenizer=tokenizer), api_key=KEY) as server:
        yield server


@pytest.fixture(scope="module")
def http(live):
    """A client that sends the key."""
    with httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as client:
        yield client


def naive_decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    return b"".join(tokenizer.vocab[i] for i in ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("prompt", PROMPTS, ids=["words", "empty", "unicode", "special", "long"])
@pytest.mark.parametrize("add_special_tokens", [None, True, False])
def test_tokenize_gives_the_tokenizers_ids_and_detokenize_the_text_back(http, tokenizer, prompt, add_special_tokens):
    request = (
        {"prompt": prompt}
        if add_special_tokens is None
        else {"prompt": prompt, "add_special_tokens": add_special_tokens}
    )
    r = http.post("/tokenize", json=request)
    assert r.status_code == 200, r.text
    ids = tokenizer.encode(prompt)
    assert r.json() == {"count": len(ids), "max_model_len": SHAPE["context_length"], "tokens": ids, "token_strs": None}
    r = http.post("/detokenize", json={"tokens": ids, "model": MODEL_NAME})
    assert r.status_code == 200 and r.json() == {"prompt": prompt}


@pytest.mark.parametrize("prompt", [p for p in PROMPTS if 0 < len(p) < 500])
def test_the_count_is_what_a_completion_of_the_prompt_uses(http, prompt):
    count = http.post("/tokenize", json={"prompt": prompt, "model": MODEL_NAME}).json()["count"]
    r = http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == count


def test_ids_that_split_characters_decode_as_bytes_do(http, tokenizer):
    rng = random.Random(0)
    single_bytes = [0xC3, 0xA9, 0xF0, 0x9F, 0x99, 0x82, 0xFF]  # halves of "é" and "🙂", a byte UTF-8 never uses
    for _ in range(20):
        ids = [rng.choice([*single_bytes, rng.randrange(tokenizer.vocab_size)]) for _ in range(rng.randrange(1, 30))]
        r = http.post("/detokenize", json={"tokens": ids})
        assert r.status_code == 200 and r.json() == {"prompt": naive_decode(tokenizer, ids)}, ids


def test_token_strs_null_is_not_asked_for(http):
    assert http.post("/tokenize", json={"prompt": "a", "return_token_strs": None}).json()["token_strs"] is None


def test_token_strs_are_the_tokens_in_gpt2s_printable_form(http, tokenizer):
    r = http.post("/tokenize", json={"prompt": f"Hi there,\n{SPECIAL}é", "return_token_strs": True})
    body = r.json()
    assert body["count"] == len(body["token_strs"]) == len(body["tokens"])
    assert "".join(body["token_strs"]) == f"Hi{chr(288)}there,{chr(266)}{SPECIAL}Ã©"  # space Ġ, newline Ċ, é as 2 bytes


# ---- GPT-2's tokenizer, against transformers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2():
    """(an httpx client of a server with GPT-2's tokenizer, transformers' GPT2Tokenizer of the same files)."""
    transformers = pytest.importorskip("transformers")
    vocab, merges = FIXTURES_DIR / "gpt2_vocab.json", FIXTURES_DIR / "gpt2_merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        pytest.skip(f"GPT-2's tokenizer files not found in {FIXTURES_DIR}")
    reference = transformers.GPT2Tokenizer(str(vocab), str(merges))
    ours = Tokenizer.from_files(vocab, merges, special_tokens=[SPECIAL])
    torch.manual_seed(0)
    model = TransformerLM(**{**SHAPE, "vocab_size": ours.vocab_size, "context_length": 128}).eval()
    with LiveServer(Engine(model, tokenizer=ours), model_name="gpt2-tiny") as live, httpx.Client(
        base_url=live.url, timeout=30
    ) as client:  # fmt: skip
        yield client, reference


def test_gpt2_ids_token_strs_and_text_equal_transformers(gpt2, shared_fixture):
    http, reference = gpt2
    story = shared_fixture("tinystories_sample.txt").read_text(encoding="utf-8")[:3000]
    german = shared_fixture("german.txt").read_text(encoding="utf-8")[:1000]
    for text in [story, german, f"{story[:200]}{SPECIAL}{german[:200]}", " 🙂\n\n  x"]:
        r = http.post("/tokenize", json={"prompt": text, "return_token_strs": True, "model": "gpt2-tiny"})
        body = r.json()
        ids = reference.encode(text)
        assert body["tokens"] == ids and body["count"] == len(ids) and body["max_model_len"] == 128
        assert body["token_strs"] == reference.convert_ids_to_tokens(ids)
        expected = reference.decode(ids, clean_up_tokenization_spaces=False)
        assert expected == text and http.post("/detokenize", json={"tokens": ids}).json() == {"prompt": text}


# ---- bad requests ----------------------------------------------------------------------------------------------


def post(path, body, headers=AUTH):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"method": "POST", "url": path, "content": content, "headers": headers}


CASES = [
    # (name, request, status, param, code)
    ("tokenize: not JSON", post("/tokenize", b'{"prompt": '), 400, None, "invalid_json"),
    ("tokenize: a list", post("/tokenize", ["a"]), 400, None, "invalid_type"),
    ("tokenize: no prompt", post("/tokenize", {}), 400, "prompt", "missing"),
    ("tokenize: prompt a number", post("/tokenize", {"prompt": 5}), 400, "prompt", "invalid_type"),
    ("tokenize: prompt token ids", post("/tokenize", {"prompt": [1, 2]}), 400, "prompt", "invalid_type"),
    ("tokenize: prompt null", post("/tokenize", {"prompt": None}), 400, "prompt", "invalid_type"),
    ("tokenize: add_special_tokens 1", post("/tokenize", {"prompt": "a", "add_special_tokens": 1}), 400,
     "add_special_tokens", "bool_type"),
    ("tokenize: unknown field", post("/tokenize", {"prompt": "a", "promt": "b"}), 400, "promt", "unknown_parameter"),
    ("tokenize: chat messages", post("/tokenize", {"messages": [{"role": "user", "content": "a"}]}), 400,
     "messages", "unknown_parameter"),
    ("tokenize: another model", post("/tokenize", {"prompt": "a", "model": "gpt-4"}), 404, "model", "model_not_found"),
    ("tokenize: no API key", post("/tokenize", {"prompt": "a"}, headers={}), 401, None, "missing_api_key"),
    ("tokenize: wrong API key", post("/tokenize", {"prompt": "a"}, headers={"Authorization": "Bearer x"}), 401,
     None, "invalid_api_key"),
    ("detokenize: not JSON", post("/detokenize", b"tokens=1"), 400, None, "invalid_json"),
    ("detokenize: a number", post("/detokenize", 7), 400, None, "invalid_type"),
    ("detokenize: no tokens", post("/detokenize", {}), 400, "tokens", "missing"),
    ("detokenize: tokens a string", post("/detokenize", {"tokens": "ab"}), 400, "tokens", "list_type"),
    ("detokenize: an id as text", post("/detokenize", {"tokens": [1, "2"]}), 400, "tokens", "int_type"),
    ("detokenize: a float id", post("/detokenize", {"tokens": [1.0]}), 400, "tokens", "int_type"),
    ("detokenize: a bool id", post("/detokenize", {"tokens": [True]}), 400, "tokens", "int_type"),
    ("detokenize: nested ids", post("/detokenize", {"tokens": [[1, 2]]}), 400, "tokens", "int_type"),
    ("detokenize: id = vocabulary size", post("/detokenize", {"tokens": [1, 512]}), 400, "tokens", "invalid_token"),
    ("detokenize: negative id", post("/detokenize", {"tokens": [-1]}), 400, "tokens", "invalid_token"),
    ("detokenize: id beyond 64 bits", post("/detokenize", {"tokens": [2**70]}), 400, "tokens", "invalid_token"),
    ("detokenize: another model", post("/detokenize", {"tokens": [1], "model": "x"}), 404, "model",
     "model_not_found"),
    ("detokenize: no API key", post("/detokenize", {"tokens": [1]}, headers={}), 401, None, "missing_api_key"),
    ("detokenize: GET", {"method": "GET", "url": "/detokenize", "headers": AUTH}, 405, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "request_args", "status", "param", "code"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_request_gets_its_status_and_an_openai_error(live, http, name, request_args, status, param, code):
    r = httpx.request(**{**request_args, "url": live.url + request_args["url"]}, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in error["message"] and error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code or error["code"])
    assert http.get("/health").json() == {"status": "ok"}
    assert http.post("/tokenize", json={"prompt": "ok"}).status_code == 200


def test_an_error_names_the_id_and_the_vocabulary(http):
    message = http.post("/detokenize", json={"tokens": [3, 9999]}).json()["error"]["message"]
    assert "9999" in message and "512" in message
