"""``logprobs`` and ``echo`` on ``/v1/completions``, held to the model's full forward (float64, no cache).

Each returned token's ``token_logprobs`` entry is ``log_softmax`` of the full forward's logits at its position —
the model's distribution, whatever temperature, top-k or top-p the request samples with — and ``top_logprobs`` the
``N`` best of that row, best first. The token names map back to ids one to one (a token holding part of a
character is named ``bytes:\\xNN``), ``text_offset`` points at each token's text, streamed chunks together are the
whole answer, and ``echo`` puts the prompt (and its scores, the first null) in front.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from cs336_lm.serve.logprobs import LegacyLogprobs


def name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


@pytest.fixture(scope="module")
def ids_of(tokenizer) -> dict[str, int]:
    """Token name -> id (names are unique: the test fails otherwise)."""
    names = {name(raw): i for i, raw in tokenizer.vocab.items()}
    assert len(names) == len(tokenizer.vocab)
    return names


def post(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def post_stream(url: str, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def check_against_full_forward(model, prompt: list[int], logprobs: dict, n: int, ids_of, echoed: bool) -> list[int]:
    """Every scored token of the choice's ``logprobs`` against the full forward; the generated ids."""
    ids = [ids_of[t] for t in logprobs["tokens"]]
    if echoed:
        assert ids[: len(prompt)] == prompt and logprobs["token_logprobs"][0] is None
    everything = ids if echoed else prompt + ids
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([everything]))[0], dim=-1)  # (tokens, vocab)
    first = 1 if echoed else len(prompt)  # position in ``everything`` of the first scored token
    scored = zip(
        logprobs["token_logprobs"][first - len(everything) :],
        logprobs["top_logprobs"][first - len(everything) :],
        strict=True,
    )
    for k, (logprob, top) in enumerate(scored):
        pos = first + k
        row = full[pos - 1]
        assert logprob == pytest.approx(float(row[everything[pos]]), abs=1e-9)
        best = row.topk(n)
        assert [ids_of[t] for t in top] == best.indices.tolist()
        assert list(top.values()) == pytest.approx(best.values.tolist(), abs=1e-9)
    return ids[len(prompt) :] if echoed else ids


def check_offsets(text: str, logprobs: dict) -> None:
    """Each token's text starts at its ``text_offset`` (tokens holding part of a character aside)."""
    offsets = logprobs["text_offset"]
    assert offsets == sorted(offsets) and (not offsets or offsets[0] == 0)
    for token, offset in zip(logprobs["tokens"], offsets, strict=True):
        if not token.startswith("bytes:"):
            assert text.startswith(token, offset), (token, offset, text)


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0},
        {"temperature": 1.7, "seed": 5},
        {"temperature": 0.6, "top_k": 3, "top_p": 0.9, "seed": 11, "repetition_penalty": 1.3},
    ],
    ids=["greedy", "hot", "filtered"],
)
def test_generated_tokens_logprobs_are_the_full_forwards_before_sampling_transforms(
    server, model, tokenizer, ids_of, settings
):
    prompt = tokenizer.encode("Once upon a time")
    body = {"prompt": "Once upon a time", "max_tokens": 12, "logprobs": 3, **settings}
    choice = post(server.url, body)["choices"][0]
    generated = check_against_full_forward(model, prompt, choice["logprobs"], 3, ids_of, echoed=False)
    assert len(generated) == 12 and tokenizer.decode(generated) == choice["text"]
    check_offsets(choice["text"], choice["logprobs"])
    if settings["temperature"] == 0:  # greedy: each token is its row's best
        pairs = zip(choice["logprobs"]["token_logprobs"], choice["logprobs"]["top_logprobs"], strict=True)
        assert all(lp == max(top.values()) for lp, top in pairs)


def test_echo_puts_the_prompt_and_its_scores_in_front(server, model, tokenizer, ids_of):
    text = "The little dog"
    prompt = tokenizer.encode(text)
    for prompt_field in (text, prompt):
        body = {"prompt": prompt_field, "max_tokens": 5, "logprobs": 2, "echo": True, "temperature": 0}
        choice = post(server.url, body)["choices"][0]
        assert choice["text"].startswith(text)
        assert choice["logprobs"]["top_logprobs"][0] is None
        generated = check_against_full_forward(model, prompt, choice["logprobs"], 2, ids_of, echoed=True)
        assert choice["text"] == text + tokenizer.decode(generated)
        check_offsets(choice["text"], choice["logprobs"])


def test_scoring_only_returns_the_prompt_and_generates_nothing(server, model, tokenizer, ids_of):
    texts = ["Hello there, friend", "Hi"]
    answer = post(server.url, {"prompt": texts, "echo": True, "max_tokens": 0, "logprobs": 0})
    assert answer["usage"]["completion_tokens"] == 0
    for text, choice in zip(texts, answer["choices"], strict=True):
        assert choice["text"] == text and choice["finish_reason"] == "length"
        assert all(top == {} for top in choice["logprobs"]["top_logprobs"][1:])
        check_against_full_forward(model, tokenizer.encode(text), choice["logprobs"], 0, ids_of, echoed=True)
    plain = post(server.url, {"prompt": "Hi", "echo": True, "max_tokens": 0})["choices"][0]
    assert plain["text"] == "Hi" and plain["logprobs"] is None


@pytest.mark.parametrize("echo", [False, True])
def test_streamed_chunks_together_are_the_whole_answer(server, echo):
    body = {"prompt": ["Once upon", "A cat"], "max_tokens": 9, "logprobs": 2, "temperature": 1.0, "seed": 3,
            "n": 2, "echo": echo}  # fmt: skip
    whole = post(server.url, body)["choices"]
    chunks = post_stream(server.url, body)
    for choice in whole:
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == choice["index"]]
        assert "".join(c["text"] for c in mine) == choice["text"]
        joined = {key: [v for c in mine for v in c["logprobs"][key]] for key in choice["logprobs"]}
        assert joined == choice["logprobs"]
        assert mine[-1]["finish_reason"] == choice["finish_reason"]


def test_a_stop_string_cuts_the_text_but_every_sampled_token_is_scored(server, tokenizer):
    free = post(server.url, {"prompt": "Once", "max_tokens": 10, "temperature": 0, "logprobs": 1})["choices"][0]
    stop = free["text"][3:6]
    if not stop:
        pytest.skip("the greedy text is too short to hold a stop string")
    cut = post(server.url, {"prompt": "Once", "max_tokens": 10, "temperature": 0, "logprobs": 1, "stop": stop})
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "stop" and stop not in choice["text"]
    n = len(choice["logprobs"]["tokens"])
    assert choice["logprobs"]["token_logprobs"] == free["logprobs"]["token_logprobs"][:n]
    assert "".join(choice["logprobs"]["tokens"]).startswith(choice["text"])


def test_tokens_that_split_or_break_a_character_have_names_and_offsets_of_their_own():
    vocab = {0: b"a", 1: b"\xe2\x80", 2: b"\x99", 3: b"\xdd", 4: b" %"}
    piece = LegacyLogprobs(vocab).piece([(t, None) for t in range(5)])
    text = b"".join(vocab.values()).decode("utf-8", errors="replace")
    assert text == "a\u2019\ufffd %"
    assert piece["tokens"] == ["a", "bytes:\\xe2\\x80", "bytes:\\x99", "bytes:\\xdd", " %"]
    assert piece["text_offset"] == [0, 1, 1, 2, 3]  # the completing byte starts where its character does
    assert text[3:] == " %"


@pytest.mark.parametrize("logprobs", [None, 1])
def test_a_streamed_scoring_request_is_one_chunk_per_choice_holding_the_prompt(server, logprobs):
    body = {"prompt": ["Once upon", "A cat"], "echo": True, "max_tokens": 0, "logprobs": logprobs}
    whole = post(server.url, body)["choices"]
    chunks = [c["choices"][0] for c in post_stream(server.url, body)]
    assert sorted(chunks, key=lambda c: c["index"]) == whole
    assert [c["text"] for c in whole] == ["Once upon", "A cat"]
    assert all(c["finish_reason"] == "length" for c in whole)
