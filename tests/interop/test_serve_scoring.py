"""Prompt scoring through ``lm-serve`` against transformers: ``echo`` + ``max_tokens: 0`` + ``logprobs`` answers
every prompt token's log-probability as ``log_softmax`` of ``AutoModelForCausalLM``'s logits on the exported
folder (float32), for prompts sent at once from several clients and so batched together by the engine."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from .conftest import ServeProcess

transformers = pytest.importorskip("transformers")

PROMPTS = [
    "Once upon a time, there was a little girl named Lily.",
    "The dog ran to the park",
    "She was happy.",
    "Tom and his mom went to the store to buy some apples and bananas for the picnic.",
    "Lily",
    "Once upon a time",  # a prefix of the first: the prefix cache must not spare its positions
]


@pytest.fixture(scope="module")
def server(run_dir):
    live = ServeProcess(run_dir)
    yield live
    live.stop()


def name(raw: bytes) -> str:
    """A token's name in ``tokens`` and ``top_logprobs``: its text, or OpenAI's ``bytes:\\xNN`` for part of a
    character."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def score(url: str, prompt: str | list[int], n: int) -> dict:
    body = {"prompt": prompt, "echo": True, "max_tokens": 0, "logprobs": n}
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


def test_echoed_prompt_logprobs_are_transformers_log_softmax(server, exported, tokenizer):
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    ids = [tokenizer.encode(p) for p in PROMPTS]
    requests = [(p, 3) for p in PROMPTS] + [(i, 1) for i in ids]  # as text and as token ids
    with ThreadPoolExecutor(8) as pool:
        choices = list(pool.map(lambda r: score(server.url, *r), requests))
    for k, ((_, n), choice) in enumerate(zip(requests, choices, strict=True)):
        tokens = ids[k % len(PROMPTS)]
        with torch.no_grad():
            want = torch.log_softmax(hf(torch.tensor([tokens])).logits[0].double(), dim=-1)  # (tokens, vocab)
        logprobs = choice["logprobs"]
        assert choice["text"] == PROMPTS[k % len(PROMPTS)] and choice["finish_reason"] == "length"
        assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
        assert logprobs["tokens"] == [name(tokenizer.vocab[t]) for t in tokens]
        got = logprobs["token_logprobs"][1:]
        assert got == pytest.approx(want[:-1].gather(1, torch.tensor(tokens[1:])[:, None])[:, 0].tolist(), abs=1e-4)
        for i, top in enumerate(logprobs["top_logprobs"][1:]):
            best = want[i].topk(n)
            assert list(top.values()) == pytest.approx(best.values.tolist(), abs=1e-4)
            assert list(top) == [name(tokenizer.vocab[t]) for t in best.indices.tolist()]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
