"""The request schema and the plan of engine requests, without a server: what is accepted, what each choice gets."""

import pytest

from cs336_lm.engine import Engine
from cs336_lm.errors import ServeError
from cs336_lm.serve import completions
from cs336_lm.serve.completions import ModelInfo
from cs336_lm.serve.protocol import CompletionRequest

from .conftest import SPECIAL


@pytest.fixture(scope="module")
def info(model, tokenizer) -> ModelInfo:
    return ModelInfo.of(Engine(model, tokenizer=tokenizer, max_kv_tokens=64), "tiny")


def test_defaults_are_openais():
    p = completions.parse(b'{"prompt": "Hi"}').sampling()
    assert (p.max_new_tokens, p.temperature, p.top_p, p.top_k, p.seed, p.stop) == (16, 1.0, None, None, None, ())


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("ab", [[ord("a"), ord("b")]]),  # "ab" is not one of the merged pairs of the test tokenizer
        (["a", "b"], [[97], [98]]),
        ([5, 6, 7], [[5, 6, 7]]),
        ([[5], [6, 7]], [[5], [6, 7]]),
    ],
)
def test_every_prompt_form_becomes_token_ids(info, prompt, expected):
    plan = completions.plan(CompletionRequest(prompt=prompt), info)
    assert [ids for ids, _ in plan.requests] == expected
    assert plan.prompt_tokens == sum(map(len, expected))


def test_choice_j_of_each_prompt_is_seeded_seed_plus_j(info):
    plan = completions.plan(CompletionRequest(prompt=["a", "b"], n=3, seed=10), info)
    assert [p.seed for _, p in plan.requests] == [10, 11, 12, 10, 11, 12]
    assert [ids for ids, _ in plan.requests] == [[97]] * 3 + [[98]] * 3
    unseeded = completions.plan(CompletionRequest(prompt="a", n=2), info)
    assert [p.seed for _, p in unseeded.requests] == [None, None]


def test_special_tokens_are_the_default_stop_ids_and_stop_strings_pass_through(info, tokenizer):
    plan = completions.plan(CompletionRequest(prompt="a", stop="\n\n"), info)
    params = plan.requests[0][1]
    assert params.stop_ids == (tokenizer.special_token_ids[SPECIAL],)
    assert params.stop == ("\n\n",)
    assert completions.plan(CompletionRequest(prompt="a", stop=["x", "y"]), info).requests[0][1].stop == ("x", "y")


def test_top_p_of_one_is_off_and_null_means_default(info):
    body = completions.parse(b'{"prompt": "a", "top_p": 1, "temperature": null, "max_tokens": null}')
    p = body.sampling()
    assert (p.top_p, p.temperature, p.max_new_tokens) == (None, 1.0, 16)


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{", 400, None),
        (b'{"prompt": "a", "max_tokens": 2.0}', 400, "max_tokens"),  # strict: a float is no integer
        (b'{"prompt": "a", "temperature": "0.5"}', 400, "temperature"),
        (b'{"prompt": [true]}', 400, "prompt"),
        (b'{"prompt": "a", "n": true}', 400, "n"),
        (b'{"prompt": "a", "stream_options": {"include_usage": 1}}', 400, "stream_options"),
    ],
)
def test_parse_is_strict(raw, status, param):
    with pytest.raises(ServeError) as caught:
        completions.parse(raw)
    assert (caught.value.status, caught.value.param) == (status, param)


def test_the_plan_refuses_what_the_model_cannot_serve(info):
    cases = [
        (CompletionRequest(prompt="a", model="other"), 404, "model"),
        (CompletionRequest(prompt="x" * 600), 400, "prompt"),
        (CompletionRequest(prompt=[[1], []]), 400, "prompt"),
        (CompletionRequest(prompt=[512]), 400, "prompt"),
        (CompletionRequest(prompt=[]), 400, "prompt"),
        (CompletionRequest(prompt="a", suffix="b"), 400, "suffix"),
        (CompletionRequest(prompt="a", logprobs=6), 400, "logprobs"),
        (CompletionRequest(prompt="a", max_tokens=0), 400, "max_tokens"),
        (CompletionRequest(prompt="a", presence_penalty=0.5), 400, "presence_penalty"),
        (CompletionRequest(prompt="a", best_of=3), 400, "best_of"),
        (CompletionRequest(prompt="a", stop=[""]), 400, "stop"),
    ]
    for body, status, param in cases:
        with pytest.raises(ServeError) as caught:
            completions.plan(body, info)
        assert (caught.value.status, caught.value.param) == (status, param), body
    # neutral values of the unsupported fields are fine, as clients send them
    completions.plan(CompletionRequest(prompt="a", echo=False, presence_penalty=0, best_of=1, logprobs=None), info)
