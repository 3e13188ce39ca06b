"""``/v1/chat/completions`` through the official ``openai`` client, on a run imported from a ChatML folder.

The folder is built here: a tiny run whose tokenizer has ``<|im_start|>`` and ``<|im_end|>``, exported, given a
ChatML ``chat_template`` and ``<|im_end|>`` as EOS, and imported back. The reference for a reply is transformers:
its ``apply_chat_template`` of the messages (the prompt ids, rendered and tokenized by transformers alone), then
the greedy continuation of those ids by our ``/v1/completions`` and by transformers' ``generate`` on the folder.
"""

import json

import httpx
import openai
import pytest
import torch

from cs336_lm.engine import Engine
from cs336_lm.generation.chat_template import DEFAULT_STOP, render_chat
from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir, load_run
from cs336_lm.tokenizer import Tokenizer

from .conftest import MODEL_NAME, SHAPE, SPECIAL, LiveServer, make_tokenizer

transformers = pytest.importorskip("transformers")

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "Once upon a time"}],
    [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "A story about a dog, please."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi. What shall I tell?"},
        {"role": "user", "content": "Something with «quotes» and a tab\there."},
    ],
]


@pytest.fixture(scope="module")
def chatml_folder(tmp_path_factory):
    """The HF folder (exported, template added) and the run imported from it."""
    from cs336_lm.interop.export import export_run
    from cs336_lm.interop.import_ import import_hf

    base = make_tokenizer()
    tok = Tokenizer(base.vocab, base.merges, [SPECIAL, "<|im_start|>", "<|im_end|>"])
    shape = {**SHAPE, "context_length": 128, "vocab_size": tok.vocab_size}
    root = tmp_path_factory.mktemp("chatml")
    run = RunDir(root / "run").create()
    tok.save(run.tokenizer_dir)
    torch.manual_seed(0)
    run.save_checkpoint(TransformerLM(**shape), None, 0, None, config={"model": {**shape, "preset": None}})
    export_run(root / "run", root / "hf")
    for name, fields in (("tokenizer_config.json", {"chat_template": CHATML}), ("special_tokens_map.json", {})):
        path = root / "hf" / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields, "eos_token": "<|im_end|>"}))
    import_hf(root / "hf", root / "imported")
    return root / "hf", root / "imported"


@pytest.fixture(scope="module")
def chat_server(chatml_folder):
    loaded = load_run(chatml_folder[1], "cpu")
    assert loaded.tokenizer.chat_template == CHATML
    with LiveServer(Engine(loaded.model, tokenizer=loaded.tokenizer)) as live:
        yield live


@pytest.fixture(scope="module")
def client(chat_server):
    with openai.OpenAI(base_url=f"{chat_server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def hf_tokenizer(chatml_folder):
    return transformers.AutoTokenizer.from_pretrained(chatml_folder[0])


def hf_prompt(hf_tokenizer, messages) -> list[int]:
    return list(hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_a_greedy_reply_is_the_greedy_completion_of_transformers_prompt(client, hf_tokenizer, messages):
    ids = hf_prompt(hf_tokenizer, messages)
    assert render_chat(CHATML, messages, named_tokens={"eos_token": "<|im_end|>"}) == hf_tokenizer.decode(ids)
    expected = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=12, temperature=0)
    reply = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-") and reply.model == MODEL_NAME
    [choice] = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.choices[0].text
    assert choice.finish_reason == expected.choices[0].finish_reason
    assert reply.usage.prompt_tokens == len(ids) == expected.usage.prompt_tokens
    assert reply.usage.completion_tokens == expected.usage.completion_tokens


def test_a_greedy_reply_is_what_transformers_generates(client, chatml_folder, hf_tokenizer):
    model = transformers.AutoModelForCausalLM.from_pretrained(chatml_folder[0], dtype=torch.float32).eval()
    messages = CONVERSATIONS[1]
    ids = hf_prompt(hf_tokenizer, messages)
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False, eos_token_id=[], pad_token_id=0)
    new = out[0, len(ids) :].tolist()
    specials = set(hf_tokenizer.all_special_ids)
    cut = next((i for i, t in enumerate(new) if t in specials), len(new))  # ours ends at a special token
    reply = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0)
    assert reply.choices[0].message.content == hf_tokenizer.decode(new[:cut])
    assert reply.usage.completion_tokens == min(cut + 1, 10)  # the end-of-turn token counts, unshown


def test_streamed_chunks_follow_openais_shape(client):
    settings = {"model": MODEL_NAME, "messages": CONVERSATIONS[0], "max_tokens": 15, "temperature": 0.9, "seed": 3}
    whole = client.chat.completions.create(n=2, **settings)
    chunks = list(client.chat.completions.create(n=2, stream=True, stream_options={"include_usage": True}, **settings))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks[:-1] if c.choices[0].index == index]
        assert mine[0].delta.role == "assistant" and mine[0].delta.content == ""
        assert all(c.delta.role is None for c in mine[1:])
        assert "".join(c.delta.content or "" for c in mine) == whole.choices[index].message.content
        assert [c.finish_reason for c in mine[:-1]] == [None] * (len(mine) - 1)
        assert mine[-1].finish_reason == whole.choices[index].finish_reason and mine[-1].delta.content is None
    assert whole.choices[0].message.content != whole.choices[1].message.content  # seed + j per choice


def test_logprobs_are_transformers_log_softmax_of_the_reply(client, chatml_folder, hf_tokenizer):
    model = transformers.AutoModelForCausalLM.from_pretrained(chatml_folder[0], dtype=torch.float32).eval()
    messages, top = CONVERSATIONS[2], 3
    settings = {"model": MODEL_NAME, "messages": messages, "max_tokens": 8, "logprobs": True, "top_logprobs": top}
    reply = client.chat.completions.create(temperature=0.7, seed=2, **settings)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 8
    assert b"".join(bytes(e.bytes) for e in content).decode(errors="replace") == reply.choices[0].message.content
    vocab = Tokenizer.from_directory(chatml_folder[1] / "tokenizer").vocab  # id -> bytes, to name the tokens
    by_bytes = {data: i for i, data in vocab.items()}
    prompt = hf_prompt(hf_tokenizer, messages)
    chosen = [by_bytes[bytes(e.bytes)] for e in content]
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + chosen])).logits[0, len(prompt) - 1 : -1]  # (8, vocab_size)
    reference = torch.log_softmax(logits.double(), dim=-1)
    for entry, token, row in zip(content, chosen, reference, strict=True):
        assert entry.logprob == pytest.approx(row[token].item(), abs=1e-4)
        best = row.topk(top)
        assert [bytes(t.bytes) for t in entry.top_logprobs] == [vocab[i] for i in best.indices.tolist()]
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(best.values.tolist(), abs=1e-4)
    chunks = list(client.chat.completions.create(temperature=0.7, seed=2, stream=True, **settings))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    settings.update(logprobs=False, top_logprobs=None)
    plain = client.chat.completions.create(temperature=0.7, seed=2, **settings)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == reply.choices[0].message.content


def test_max_completion_tokens_and_stop(client):
    reply = client.chat.completions.create(
        model=MODEL_NAME, messages=CONVERSATIONS[0], max_completion_tokens=4, temperature=0
    )
    assert reply.usage.completion_tokens == 4 and reply.choices[0].finish_reason == "length"
    longer = client.chat.completions.create(model=MODEL_NAME, messages=CONVERSATIONS[0], max_tokens=20, temperature=0)
    text = longer.choices[0].message.content
    stop = text[5:7]
    cut = client.chat.completions.create(
        model=MODEL_NAME, messages=CONVERSATIONS[0], max_tokens=20, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_the_end_of_turn_token_ends_a_reply(chat_server, chatml_folder):
    from cs336_lm.serve import chat
    from cs336_lm.serve.chat_protocol import ChatRequest
    from cs336_lm.serve.completions import ModelInfo

    info = ModelInfo.of(chat_server.engine_loop.engine, MODEL_NAME)
    plan = chat.plan(ChatRequest(messages=CONVERSATIONS[0]), info)
    [(_, params)] = plan.requests
    assert info.tokenizer.special_token_ids["<|im_end|>"] in params.stop_ids
    assert params.max_new_tokens == 128  # no limit given: up to the end of the context


def test_the_models_card_says_there_is_a_template(client, chat_server):
    assert client.models.list().data[0].model_extra["chat_template"] is True


BAD = [
    ({"messages": []}, "messages", "messages is empty"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "must be one of system, user, assistant"),
    ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "must be a string or a list of text"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content", "list of text parts"),
    ({"messages": [{"role": "user", "content": "hi"}, "hello"]}, "messages[1]", "must be an object"),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "must be a string"),
    ({"messages": [{"role": "user", "content": "a", "tool_calls": []}]}, "messages[0].tool_calls", "not supported"),
    ({"messages": CONVERSATIONS[0], "logprobs": True, "top_logprobs": 21}, "top_logprobs", "from 0 to 20"),
    ({"messages": CONVERSATIONS[0], "top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
    ({"messages": CONVERSATIONS[0], "max_completion_tokens": 0}, "max_completion_tokens", "max_completion_tokens"),
    ({"messages": CONVERSATIONS[0], "temperature": -1}, "temperature", "temperature"),
    ({"messages": [{"role": "user", "content": "word " * 200}]}, "messages", "the conversation's prompt has"),
    ({"messages": CONVERSATIONS[0], "model": "other"}, "model", "does not exist"),
]


@pytest.mark.parametrize(("body", "param", "message"), BAD)
def test_bad_requests_are_openai_errors_and_the_server_stays_healthy(chat_server, body, param, message):
    response = httpx.post(f"{chat_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == (404 if param == "model" else 400)
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.get(f"{chat_server.url}/health", timeout=10).json() == {"status": "ok"}


def test_the_openai_client_sees_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "robot", "content": "hi"}])
    assert caught.value.status_code == 400 and caught.value.body["param"] == "messages[0].role"


def test_a_template_that_refuses_the_messages_is_a_400(model, tokenizer):
    refusing = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system messages here') }}{% endif %}ok"
    tok = Tokenizer(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens, chat_template=refusing)
    with LiveServer(Engine(model, tokenizer=tok)) as live:
        response = httpx.post(f"{live.url}/v1/chat/completions", json={"messages": CONVERSATIONS[1]}, timeout=30)
        assert response.status_code == 400
        assert response.json()["error"] == {
            "message": "the chat template refused the messages: no system messages here",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "chat_template_error",
        }
        assert httpx.get(f"{live.url}/health", timeout=10).status_code == 200
        ok = httpx.post(f"{live.url}/v1/chat/completions", json={"messages": CONVERSATIONS[0], "max_tokens": 2})
        assert ok.status_code == 200 and ok.json()["usage"]["prompt_tokens"] == len(tok.encode("ok"))


def test_a_run_without_a_template_chats_in_the_plain_default(server, tokenizer):
    messages = CONVERSATIONS[1]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        assert c.models.list().data[0].model_extra["chat_template"] is False
        reply = c.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=40, temperature=0)
        text = "System: You tell stories.\n\nUser: A story about a dog, please.\n\nAssistant:"
        expected = c.completions.create(
            model=MODEL_NAME, prompt=text, max_tokens=40, temperature=0, stop=list(DEFAULT_STOP)
        )
    assert reply.choices[0].message.content == expected.choices[0].text
    assert reply.usage.prompt_tokens == len(tokenizer.encode(text))


def test_the_chat_route_shares_the_key_and_the_metrics(model, tokenizer):
    with LiveServer(Engine(model, tokenizer=tokenizer), api_key="k") as live:
        url, body = f"{live.url}/v1/chat/completions", {"messages": CONVERSATIONS[0], "max_tokens": 2}
        assert httpx.post(url, json=body, timeout=30).status_code == 401
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer k"}, timeout=30).status_code == 200
        metrics = live.metrics()
    assert metrics['lm_http_requests_total{path="/v1/chat/completions",status="401"}'] == 1
    assert metrics['lm_http_requests_total{path="/v1/chat/completions",status="200"}'] == 1
    assert metrics["lm_generation_tokens_total"] == 2
