"""The planner: shapes follow the documented rule and count their parameters as a real model does; every run
spends its budget within 2%; budgets too small for any shape are refused."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_lm.errors import ConfigError
from cs336_lm.nn import PRESETS, ModelArgs, TransformerLM
from cs336_lm.scaling.plan import plan_budget, plan_study
from cs336_lm.scaling.shapes import ASPECT_RANGE, HEAD_WIDTH, non_embedding_params, shape_for_params

DEMO = ModelArgs(vocab_size=2048, context_length=256, d_model=128, num_layers=4, num_heads=4, d_ff=384)


def naive_training_flops_per_token(s: ModelArgs) -> float:
    """3 × the forward's matmul FLOPs per token, written from the architecture: per layer q, k, v and output
    projections (4·d² multiply-adds), T·d for the scores and T·d for attention·V (the full square), the SwiGLU's
    3·d·d_ff; then the head d·V; 2 FLOPs per multiply-add."""
    t, d = s.context_length, s.d_model
    per_layer = 4 * d * d + 2 * t * d + 3 * d * s.d_ff
    return 3 * 2 * (s.num_layers * per_layer + d * s.vocab_size)


@pytest.mark.parametrize("target", [5e4, 1e5, 3e5, 1e6, 3e6])
def test_shapes_follow_the_rule_and_count_like_a_real_model(target):
    s = shape_for_params(target, DEMO)
    assert s.d_model % HEAD_WIDTH == 0 and s.num_heads * HEAD_WIDTH == s.d_model and s.d_ff == 3 * s.d_model
    assert ASPECT_RANGE[0] <= s.d_model / s.num_layers <= ASPECT_RANGE[1]
    model = TransformerLM(**s.replace(vocab_size=64), device="meta")  # shapes only: nothing allocated
    real = sum(p.numel() for p in model.parameters()) - 64 * s.d_model  # less the embedding table
    assert non_embedding_params(s) == real + (s.vocab_size - 64) * s.d_model  # the head grows with V
    assert s.vocab_size == DEMO.vocab_size and s.context_length == DEMO.context_length


def test_shapes_grow_with_the_target_and_land_near_it():
    sizes = [non_embedding_params(shape_for_params(t, DEMO)) for t in [1e5 * 1.5**k for k in range(12)]]
    assert sizes == sorted(sizes)
    for k, n in enumerate(sizes):
        if k > 1:  # above the smallest shape the nearest one is within the rule's tolerance, or the ladder's gap
            assert abs(math.log(n / (1e5 * 1.5**k))) < math.log(1.3)


@settings(max_examples=40, deadline=None)
@given(budget=st.floats(5e11, 1e15), sizes=st.integers(3, 7), preset=st.sampled_from(["demo", "debug"]))
def test_every_run_spends_its_budget_within_two_percent(budget, sizes, preset):
    base = DEMO if preset == "demo" else PRESETS["debug"]
    step_tokens = 8 * base.context_length
    try:
        runs = plan_budget(base, budget, sizes, step_tokens)
    except ConfigError:
        return  # too small a budget for this preset: the refusal has its own test
    assert 3 <= len(runs) <= sizes
    assert len({r.params for r in runs}) == len(runs)
    for r in runs:
        assert r.steps >= 50
        spent = r.steps * step_tokens * naive_training_flops_per_token(base.replace(**r.shape))
        assert spent == pytest.approx(budget, rel=0.02)


def test_sizes_span_the_budgets_optimum_guess():
    runs = plan_budget(DEMO, 1e14, 5, 2048)  # 6·N·20N = C: N ≈ 913k
    assert runs[0].params < 913e3 < runs[-1].params
    assert runs[-1].params / runs[0].params > 8


def test_a_budget_too_small_for_any_shape_is_refused():
    with pytest.raises(ConfigError, match="too small for any shape"):
        plan_budget(DEMO, 1e10, 5, 2048)


def test_budgets_must_be_positive_and_distinct():
    with pytest.raises(ConfigError, match="twice"):
        plan_study(DEMO, [1e13, 1e13], 5, 2048)
    with pytest.raises(ConfigError, match="positive"):
        plan_study(DEMO, [-1.0], 5, 2048)
    with pytest.raises(ConfigError, match="at least 3"):
        plan_study(DEMO, [1e13], 2, 2048)


def test_fewer_sizes_than_asked_are_planned_with_a_warning_saying_why():
    narrow = r"4 distinct sizes of the 5 asked: targets .* fell on the same shapes; a wider --span"
    with pytest.warns(UserWarning, match=narrow):
        runs = plan_budget(DEMO, 4e12, 5, 2048, span=3)
    assert len(runs) == len({r.params for r in runs}) == 4
    with pytest.warns(UserWarning, match=r"reach the rule's largest shape \(d2048 L128"):  # a budget past every shape
        runs = plan_budget(DEMO, 1e22, 5, 2048)
    assert runs[-1].shape["d_model"] == 2048 and runs[-1].shape["num_layers"] == 128
