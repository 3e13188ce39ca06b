"""``score_windows``: every token but the first scored exactly once, in order, with the promised left context."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs336_lm.evaluation import Window, score_windows


def test_worked_example():
    assert score_windows(10, 4, 2) == [Window(0, 4, 0), Window(2, 4, 2), Window(4, 4, 2), Window(5, 4, 3)]
    assert score_windows(9, 4, 4) == [Window(0, 4, 0), Window(4, 4, 0)]
    assert score_windows(2, 4, 4) == [Window(0, 1, 0)]
    assert score_windows(1, 4, 4) == [] and score_windows(0, 4, 4) == []


@given(n=st.integers(0, 300), context=st.integers(1, 40), data=st.data())
def test_each_target_once_with_enough_context(n, context, data):
    stride = data.draw(st.integers(1, context))
    scored = []
    for w in score_windows(n, context, stride):
        assert 1 <= w.length <= context and w.start >= 0 and w.start + w.length <= n - 1
        assert 0 <= w.skip < w.length
        for target in range(w.start + 1 + w.skip, w.start + w.length + 1):
            scored.append(target)
            assert target - w.start >= min(target, context - stride + 1)  # tokens of left context it sees
    assert scored == list(range(1, n))


@pytest.mark.parametrize(("context", "stride"), [(0, 1), (4, 0), (4, 5)])
def test_bad_windows(context, stride):
    with pytest.raises(ValueError, match="stride"):
        score_windows(10, context, stride)
