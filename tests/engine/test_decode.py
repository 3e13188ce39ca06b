"""``generate`` and ``complete`` (the engine on a pool of their own) against naive loops over the model's full
forward; stop reasons; a prompt in a batch gets what it gets alone; bad input fails before the first step."""

import pytest
import torch

from cs336_lm.engine import complete, generate
from cs336_lm.errors import GenerationError


def run(gen):
    """Drain a generator: (yielded items, return value)."""
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as end:
            return items, end.value


def naive_greedy(model, prompt, n):
    """Reference: re-run the full model on the whole sequence and take argmax of the last logits."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


def naive_sampled(model, prompt, n, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            probs = torch.softmax(model(torch.tensor([ids]))[0, -1] / temperature, dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=g)))
    return ids[len(prompt) :]


def test_greedy_matches_naive_loop_and_is_deterministic(model):
    prompt = [5, 17, 200, 3]
    tokens, reason = run(generate(model, prompt, 20, temperature=0))
    assert tokens == naive_greedy(model, prompt, 20)
    assert reason == "length"
    assert run(generate(model, prompt, 20, temperature=0))[0] == tokens


def test_seeded_sampling_matches_naive_loop_and_repeats(model):
    prompt = [9, 8, 7]
    tokens, _ = run(generate(model, prompt, 15, temperature=0.9, seed=123))
    assert tokens == naive_sampled(model, prompt, 15, 0.9, seed=123)
    assert run(generate(model, prompt, 15, temperature=0.9, seed=123))[0] == tokens
    assert run(generate(model, prompt, 15, temperature=0.9, seed=124))[0] != tokens


def test_stops_at_a_stop_id_without_yielding_it(model):
    prompt = [11, 12, 13]
    free = naive_greedy(model, prompt, 12)
    stop = free[4]
    first = free.index(stop)
    tokens, reason = run(generate(model, prompt, 12, temperature=0, stop_ids={stop, 10_000}))
    assert tokens == free[:first]
    assert reason == "stop"


def test_stops_at_the_context_length(model):
    prompt = list(range(1, model.context_length - 3))  # leaves room for 4 tokens
    tokens, reason = run(generate(model, prompt, 10, temperature=0))
    assert len(tokens) == 4
    assert reason == "context"
    assert tokens == naive_greedy(model, prompt, 4)


def test_zero_new_tokens(model):
    assert run(generate(model, [1, 2], 0)) == ([], "length")


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.1, "top_p": 0.9, "seed": 42}])
def test_batched_prompts_equal_generating_each_alone(model, sampling):
    prompts = [[3], list(range(20, 32)), [7, 7, 7, 7, 7], list(range(40, 47))]
    stop = {run(generate(model, prompts[2], 3, temperature=0))[0][2]}  # row 2 stops early when greedy
    batch = complete(model, prompts, 15, stop_ids=stop, **sampling)
    for b, prompt in enumerate(prompts):
        alone = dict(sampling)
        if "seed" in alone:
            alone["seed"] += b  # row b of a seeded batch draws from seed + b
        tokens, reason = run(generate(model, prompt, 15, stop_ids=stop, **alone))
        assert batch[b].tokens == tokens
        assert batch[b].finish_reason == reason
    if sampling["temperature"] == 0:
        assert batch[2].finish_reason == "stop"


def test_batch_rows_finish_for_their_own_reasons(model):
    ctx = model.context_length
    prompts = [[1, 2], list(range(1, ctx - 1))]  # row 1 has room for 2 tokens only
    rows = complete(model, prompts, 5, temperature=0)
    assert [r.finish_reason for r in rows] == ["length", "context"]
    assert [len(r.tokens) for r in rows] == [5, 2]


@pytest.mark.parametrize(
    ("prompts", "kwargs", "message"),
    [
        ([[]], {}, "empty"),
        ([], {}, "no prompts"),
        ([[1] * 64], {}, "context"),
        ([[1, 512]], {}, "outside the vocabulary"),
        ([[-1]], {}, "outside the vocabulary"),
        ([[1]], {"max_new_tokens": -1}, "max_new_tokens"),
        ([[1]], {"temperature": -1.0}, "temperature"),
        ([[1]], {"top_p": 0.0}, "top_p"),
        ([[1]], {"top_k": 0}, "top_k"),
    ],
)
def test_bad_requests_fail_before_the_first_step(model, prompts, kwargs, message):
    kwargs = {"max_new_tokens": 5, **kwargs}
    with pytest.raises(GenerationError, match=message):
        if len(prompts) == 1:
            generate(model, prompts[0], **kwargs)  # raised at the call, not at the first next()
        complete(model, prompts, **kwargs)


def test_inference_mode_does_not_leak_to_the_caller(model):
    gen = generate(model, [1, 2, 3], 3, temperature=0)
    next(gen)
    assert not torch.is_inference_mode_enabled()
    assert torch.is_grad_enabled()
