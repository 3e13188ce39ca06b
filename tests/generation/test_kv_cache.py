"""The model's forward over a contiguous cache against its own full forward, step by step, with and without
padding, on both attention backends and with grouped-query attention."""

import pytest
import torch

from cs336_lm.generation.kv_cache import ContiguousKVCache

from .conftest import make_model

ATOL = 1e-5


def cached_forward(model, cache, ids):
    """The next ``ids.shape[1]`` columns through the model; the logits of the last one, (batch, vocab)."""
    return model(ids, kv_cache=cache.extend(ids.shape[1]))


def KVCache(model, batch, max_len):
    return ContiguousKVCache(model, batch, max_len)


def random_ids(n: int, seed: int, vocab: int = 512) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prompt_len", [1, 7, 30])
def test_cached_logits_equal_full_forward_at_every_step(model, prompt_len):
    ids = random_ids(50, seed=prompt_len)[None]  # (1, 50)
    with torch.inference_mode():
        full = model(ids)  # (1, 50, vocab)
        cache = KVCache(model, 1, 50)
        got = [cached_forward(model, cache, ids[:, :prompt_len])]
        got += [cached_forward(model, cache, ids[:, t : t + 1]) for t in range(prompt_len, 50)]
    torch.testing.assert_close(torch.stack(got, dim=1), full[:, prompt_len - 1 :], atol=ATOL, rtol=0)
    assert cache.length == 50


def test_chunks_of_several_tokens_continue_the_cache(model):
    ids = random_ids(24, seed=3)[None]
    with torch.inference_mode():
        full = model(ids)
        cache = KVCache(model, 1, 24)
        for start, stop in [(0, 5), (5, 9), (9, 10), (10, 24)]:
            logits = cached_forward(model, cache, ids[:, start:stop])
            torch.testing.assert_close(logits, full[:, stop - 1], atol=ATOL, rtol=0)


def test_batch_without_padding_matches_rowwise(model):
    ids = torch.stack([random_ids(12, seed=s) for s in range(3)])  # (3, 12)
    with torch.inference_mode():
        full = model(ids)
        cache = KVCache(model, 3, 12)
        cached_forward(model, cache, ids[:, :4])
        for t in range(4, 12):
            torch.testing.assert_close(cached_forward(model, cache, ids[:, t : t + 1]), full[:, t], atol=ATOL, rtol=0)


def test_left_padded_rows_equal_each_row_alone(model):
    lengths = [3, 9, 1, 6]
    prompts = [random_ids(n + 8, seed=10 + n) for n in lengths]  # each row: prompt then 8 decoded tokens
    width = max(lengths)
    batch = torch.zeros(len(lengths), width + 8, dtype=torch.long)
    for b, n in enumerate(lengths):
        batch[b, width - n :] = prompts[b]
    with torch.inference_mode():
        cache = KVCache(model, len(lengths), width + 8)
        cache.set_padding(torch.tensor([width - n for n in lengths]))
        steps = [cached_forward(model, cache, batch[:, :width])]
        steps += [cached_forward(model, cache, batch[:, t : t + 1]) for t in range(width, width + 8)]
        got = torch.stack(steps, dim=1)  # (batch, 9, vocab)
        for b, n in enumerate(lengths):
            alone = model(prompts[b][None])[0, n - 1 :]  # (9, vocab): logits after the prompt and each new token
            torch.testing.assert_close(got[b], alone, atol=ATOL, rtol=0)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("attention", ["reference", "sdpa"])
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_each_backend_and_grouped_heads_decode_through_the_cache(monkeypatch, attention, num_kv_heads):
    model = make_model(attention=attention, num_kv_heads=num_kv_heads)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    ids = random_ids(20, seed=4)[None]
    with torch.inference_mode():
        full = model(ids)
        calls.clear()
        cache = KVCache(model, 1, 20)
        assert cache.keys[0].shape[1] == num_kv_heads  # the cache holds key/value heads only
        got = [cached_forward(model, cache, ids[:, :6])]
        got += [cached_forward(model, cache, ids[:, t : t + 1]) for t in range(6, 20)]
    torch.testing.assert_close(torch.stack(got, dim=1), full[:, 5:], atol=ATOL, rtol=0)
    # the cached path runs the backend the model was built with: 15 forwards x 2 layers through sdpa, or none
    assert len(calls) == (15 * len(model.layers) if attention == "sdpa" else 0)


def test_lm_head_only_on_the_last_position(model):
    cache = KVCache(model, 2, 10)
    with torch.inference_mode():
        logits = cached_forward(model, cache, torch.zeros(2, 7, dtype=torch.long))
    assert logits.shape == (2, model.vocab_size)


def test_cache_is_preallocated_and_overflow_is_refused(model):
    cache = KVCache(model, 2, 8)
    assert len(cache.keys) == len(model.layers)
    assert cache.keys[0].shape == (2, model.layers[0].attn.num_heads, 8, model.layers[0].attn.d_head)
    with torch.inference_mode():
        cached_forward(model, cache, torch.zeros(2, 8, dtype=torch.long))
        with pytest.raises(ValueError, match="holds 8 columns"):
            cached_forward(model, cache, torch.zeros(2, 1, dtype=torch.long))


def test_training_forward_is_untouched(model):
    ids = random_ids(10, seed=5)[None]
    before = model(ids)
    cache = KVCache(model, 1, 10)
    with torch.inference_mode():
        cached_forward(model, cache, ids)
    assert torch.equal(model(ids), before)
    assert before.requires_grad  # the model's own forward still builds a graph for training


def test_decoding_follows_weights_changed_in_place():
    # the CPU inference layout (transposed copies of the projections) is rebuilt when the parameters change
    model = make_model(seed=1)
    ids = random_ids(12, seed=6)[None]
    with torch.inference_mode():
        cached_forward(model, KVCache(model, 1, 12), ids)
    other = make_model(seed=2)
    with torch.no_grad():
        model.load_state_dict(other.state_dict())  # in-place copies: same tensors, new values
    with torch.inference_mode():
        cache = KVCache(model, 1, 12)
        torch.testing.assert_close(cached_forward(model, cache, ids), other(ids)[:, -1], atol=ATOL, rtol=0)
