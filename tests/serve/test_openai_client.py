"""The official ``openai`` client against a live server: every answer equals the engine's offline output for the
same prompt and seed (a second ``Engine`` on the same weights, no HTTP in between)."""

import openai
import pytest

from cs336_lm.engine import Engine, SamplingParams

from .conftest import MODEL_NAME, SPECIAL

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def offline(model, tokenizer):
    """``offline(prompts, **settings)`` -> Completions of a fresh engine, with the server's default stop ids."""
    stop_ids = (tokenizer.special_token_ids[SPECIAL],)

    def generate(prompts, params_list=None, **settings):
        params = params_list or SamplingParams(stop_ids=stop_ids, **settings)
        return Engine(model, tokenizer=tokenizer).generate(prompts, params)

    return generate


def test_models_lists_the_served_model(client, model):
    listed = client.models.list()
    assert [m.id for m in listed.data] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    assert listed.data[0].model_extra["context_length"] == model.context_length


def test_a_greedy_completion_equals_the_engine_offline(client, offline, tokenizer):
    answer = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=20, temperature=0)
    [expected] = offline([PROMPT], max_new_tokens=20, temperature=0.0)
    assert answer.object == "text_completion" and answer.model == MODEL_NAME and answer.id.startswith("cmpl-")
    assert answer.choices[0].text == expected.text
    assert answer.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert answer.usage.prompt_tokens == len(tokenizer.encode(PROMPT))
    assert answer.usage.completion_tokens == len(expected.tokens)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_pieces_join_to_the_same_text_and_only_the_last_has_a_finish_reason(client, offline):
    settings = {"max_tokens": 30, "temperature": 0.8, "seed": 5}
    whole = client.completions.create(model=MODEL_NAME, prompt=PROMPT, **settings)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, stream=True, **settings))
    assert len(chunks) > 5  # it did stream
    assert all(c.object == "text_completion" and len(c.choices) == 1 for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    reasons = [c.choices[0].finish_reason for c in chunks]
    assert reasons[-1] == whole.choices[0].finish_reason and set(reasons[:-1]) == {None}
    [expected] = offline([PROMPT], max_new_tokens=30, temperature=0.8, seed=5)
    assert whole.choices[0].text == expected.text


def test_stream_with_usage_ends_with_a_usage_chunk(client):
    chunks = list(
        client.completions.create(
            model=MODEL_NAME, prompt=PROMPT, max_tokens=7, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 7
    assert all(c.usage is None for c in chunks[:-1])


def test_n_choices_use_seeds_seed_plus_j(client, tokenizer, offline):
    answer = client.completions.create(model=MODEL_NAME, prompt=PROMPT, n=3, seed=40, max_tokens=12, temperature=1.0)
    ids = tokenizer.encode(PROMPT)
    stop_ids = (tokenizer.special_token_ids[SPECIAL],)
    params = [SamplingParams(max_new_tokens=12, temperature=1.0, seed=40 + j, stop_ids=stop_ids) for j in range(3)]
    expected = offline([ids] * 3, params)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert [c.text for c in answer.choices] == [e.text for e in expected]
    assert len({c.text for c in answer.choices}) == 3


def test_several_prompts_and_token_id_prompts(client, offline):
    prompts = [[10, 20, 30], [40, 50]]
    answer = client.completions.create(model=MODEL_NAME, prompt=prompts, n=2, max_tokens=6, temperature=0)
    expected = offline(prompts, max_new_tokens=6, temperature=0.0)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]  # prompt p's choice j is p·n + j
    assert [c.text for c in answer.choices] == [expected[0].text] * 2 + [expected[1].text] * 2
    assert answer.usage.prompt_tokens == 5  # each prompt counted once, whatever n
    single = client.completions.create(model=MODEL_NAME, prompt=[10, 20, 30], max_tokens=6, temperature=0)
    assert single.choices[0].text == expected[0].text


def test_a_stop_string_ends_the_text_before_it(client):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=40, temperature=0).choices[0].text
    stop = full[12:15]
    assert len(stop) == 3 and stop.strip("\ufffd")  # a real piece of text, not only replacement characters
    expected = full[: full.index(stop)]
    stopped = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=40, temperature=0, stop=[stop])
    assert stopped.choices[0].text == expected and stopped.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=40, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == expected


def test_the_same_seed_gives_the_same_text_and_another_seed_another(client):
    def sample(seed):
        settings = {"max_tokens": 24, "temperature": 1.0, "top_p": 0.9, "seed": seed}
        return client.completions.create(model=MODEL_NAME, prompt=PROMPT, extra_body={"top_k": 50}, **settings)

    first, again, other = sample(123), sample(123), sample(124)
    assert first.choices[0].text == again.choices[0].text
    assert first.choices[0].text != other.choices[0].text


def test_engine_knobs_beyond_openai_go_in_extra_body(client, offline):
    settings = {"top_k": 3, "repetition_penalty": 1.3}
    answer = client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=15, temperature=0.7, seed=9, extra_body=settings
    )
    [expected] = offline([PROMPT], max_new_tokens=15, temperature=0.7, seed=9, **settings)
    assert answer.choices[0].text == expected.text


def test_the_client_sees_openai_errors(client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="gpt-5", prompt=PROMPT)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=MODEL_NAME, prompt="x" * 600)
    assert too_long.value.code == "context_length_exceeded" and too_long.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as invalid:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=-1)
    assert invalid.value.param == "temperature" and invalid.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError) as unknown_field:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, extra_body={"temprature": 1})
    assert unknown_field.value.param == "temprature"
