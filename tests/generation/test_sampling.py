"""Sampling filters against hand-computed distributions; sampling frequencies within statistical bounds."""

import math

import pytest
import torch

from cs336_lm.errors import GenerationError
from cs336_lm.generation.sampling import (
    apply_temperature,
    filter_logits,
    make_generators,
    sample_next,
    top_k_filter,
    top_p_filter,
    validate_sampling,
)

INF = math.inf


def logits_of(*probs: float) -> torch.Tensor:
    """Logits whose softmax is ``probs`` (one row)."""
    return torch.tensor([[math.log(p) if p > 0 else -INF for p in probs]])


def dist(logits: torch.Tensor) -> list[float]:
    return torch.softmax(logits, dim=-1)[0].tolist()


def test_temperature_zero_keeps_first_argmax_without_dividing():
    out = apply_temperature(torch.tensor([[1.0, 3.0, 3.0]]), 0)
    assert out.tolist() == [[-INF, 3.0, -INF]]


def test_temperature_scales_logits():
    assert apply_temperature(torch.tensor([[1.0, 3.0]]), 2.0).tolist() == [[0.5, 1.5]]


def test_temperature_sharpens_by_power():
    # softmax(log p / T) = p^(1/T) / sum: T=0.5 squares the probabilities.
    out = dist(apply_temperature(logits_of(0.5, 0.3, 0.2), 0.5))
    expected = [0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38]
    assert out == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("row", "k", "expected"),
    [
        ([2.0, 5.0, 5.0, 1.0], 2, [-INF, 5.0, 5.0, -INF]),
        ([5.0, 2.0, 2.0, 2.0], 2, [5.0, 2.0, -INF, -INF]),  # a tie at the k-th value: lower id wins
        ([1.0, 1.0, 1.0, 1.0], 3, [1.0, 1.0, 1.0, -INF]),
        ([3.0, 1.0, 2.0], 1, [3.0, -INF, -INF]),
        ([3.0, 1.0, 2.0], 3, [3.0, 1.0, 2.0]),
        ([3.0, 1.0, 2.0], 10, [3.0, 1.0, 2.0]),
    ],
)
def test_top_k(row, k, expected):
    out = top_k_filter(torch.tensor([row]), k)
    assert out.tolist() == [expected]
    assert int(torch.isfinite(out).sum()) == min(k, len(row))


def test_top_k_rows_are_independent():
    out = top_k_filter(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), 1)
    assert out.tolist() == [[-INF, -INF, 3.0], [3.0, -INF, -INF]]


@pytest.mark.parametrize(
    ("probs", "p", "kept"),
    [
        ((0.1, 0.6, 0.3), 0.65, [1, 2]),
        ((0.1, 0.6, 0.3), 0.5, [1]),
        ((0.1, 0.6, 0.3), 0.95, [0, 1, 2]),
        ((0.1, 0.6, 0.3), 0.01, [1]),  # the most likely token always stays
        ((0.4, 0.4, 0.2), 0.3, [0]),  # tie at the top: the lower id
        ((0.4, 0.4, 0.2), 0.5, [0, 1]),
        ((0.25, 0.25, 0.25, 0.25), 0.6, [0, 1, 2]),
    ],
)
def test_top_p_keeps_smallest_set_reaching_p(probs, p, kept):
    out = top_p_filter(logits_of(*probs), p)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == kept
    total = sum(probs[i] for i in kept)
    assert dist(out) == pytest.approx([probs[i] / total if i in kept else 0.0 for i in range(len(probs))], abs=1e-6)


def test_top_p_one_keeps_everything():
    logits = logits_of(0.5, 0.3, 0.2, 1e-9)
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_filters_apply_in_order_temperature_top_k_top_p():
    logits = logits_of(0.5, 0.3, 0.2)
    # top-p alone at 0.6 keeps {0, 1}; after T=0.5 the top token has 0.66 and stands alone.
    assert torch.isfinite(filter_logits(logits, 1.0, None, 0.6)).sum() == 2
    assert torch.isfinite(filter_logits(logits, 0.5, None, 0.6)).sum() == 1
    # top-k=2 first renormalizes to (0.625, 0.375): top-p 0.6 then keeps token 0 alone.
    assert dist(filter_logits(logits, 1.0, 2, 0.6)) == pytest.approx([1.0, 0.0, 0.0])
    # T=2, k=2: p^(1/2) over the two kept tokens.
    a, b = math.sqrt(0.5), math.sqrt(0.3)
    assert dist(filter_logits(logits, 2.0, 2, None)) == pytest.approx([a / (a + b), b / (a + b), 0.0], abs=1e-6)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "word"),
    [
        (-0.1, None, None, "temperature"),
        (math.nan, None, None, "temperature"),
        (1e-320, None, None, r"temperature must be 0 \(greedy\) or at least 1e-06"),  # 1/T overflows float32
        (1.0, 0, None, "top_k"),
        (1.0, -3, None, "top_k"),
        (1.0, None, 0.0, "top_p"),
        (1.0, None, 1.5, "top_p"),
        (1.0, None, -0.2, "top_p"),
    ],
)
def test_invalid_settings_are_rejected(temperature, top_k, top_p, word):
    with pytest.raises(GenerationError, match=word):
        validate_sampling(temperature, top_k, top_p)


def test_valid_settings_pass():
    validate_sampling(0, 1, 1.0)
    validate_sampling(1.3, None, 0.01)
    validate_sampling(1e-6, None, None)


def test_the_smallest_temperature_still_gives_a_distribution():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0)) * 30
    probs = torch.softmax(filter_logits(logits, 1e-6, None, None), dim=-1)
    assert torch.isfinite(probs).all() and torch.equal(probs.argmax(-1), logits.argmax(-1))


def test_greedy_is_deterministic_argmax():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    first = sample_next(logits, temperature=0)
    assert torch.equal(first, logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=0, top_k=5, top_p=0.3), first)


def test_seeded_sampling_is_reproducible_and_row_independent():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    a = [sample_next(logits, 1.0, generators=make_generators(7, 3)).tolist() for _ in range(2)]
    assert a[0] == a[1]
    # Row 1 of the batch draws from seed 8 only: alone with seed 8 it samples the same token.
    gens = make_generators(7, 3)
    batch = [sample_next(logits, 1.0, generators=gens).tolist() for _ in range(20)]
    gen8 = make_generators(8, 1)
    alone = [sample_next(logits[1:2], 1.0, generators=gen8).item() for _ in range(20)]
    assert [row[1] for row in batch] == alone


def test_sampling_frequencies_match_the_distribution():
    probs = [0.5, 0.3, 0.15, 0.05, 0.0]
    n = 20_000
    logits = logits_of(*probs).expand(n, -1)
    g = torch.Generator().manual_seed(1234)
    draws = sample_next(logits, 1.0, generators=[g] * n)
    counts = torch.bincount(draws, minlength=len(probs)).tolist()
    for p, c in zip(probs, counts, strict=True):
        assert abs(c - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9  # 5 standard deviations


def test_filtered_tokens_are_never_sampled():
    n = 5_000
    logits = logits_of(0.4, 0.3, 0.2, 0.1).expand(n, -1)
    draws = sample_next(logits, 1.0, top_k=3, top_p=0.65, generators=[torch.Generator().manual_seed(0)] * n)
    counts = torch.bincount(draws, minlength=4).tolist()
    # top-k=3 → (4/9, 3/9, 2/9); top-p 0.65 keeps tokens 0 and 1 → (4/7, 3/7).
    assert counts[2] == counts[3] == 0
    assert abs(counts[0] - n * 4 / 7) <= 5 * math.sqrt(n * (4 / 7) * (3 / 7))
