"""``cosine_lr`` against a hand-computed table, including the phase boundaries and zero warmup."""

import itertools
import math

import pytest

from cs336_lm.optim import cosine_lr

# max 1.0, min 0.1, warmup 10, decay ends at step 110 (100 decay steps)
TABLE = [
    (0, 0.0),
    (1, 0.1),
    (5, 0.5),
    (9, 0.9),
    (10, 1.0),  # end of warmup: cos(0) = 1
    (35, 0.1 + 0.5 * (1 + math.cos(math.pi / 4)) * 0.9),  # 0.86819805...
    (60, 0.55),  # half way: cos(π/2) = 0
    (85, 0.1 + 0.5 * (1 - math.cos(math.pi / 4)) * 0.9),  # 0.23180194...
    (110, 0.1),  # end of decay: cos(π) = -1
    (111, 0.1),
    (10_000, 0.1),
]


@pytest.mark.parametrize(("it", "expected"), TABLE)
def test_table(it, expected):
    assert cosine_lr(it, 1.0, 0.1, 10, 110) == pytest.approx(expected, abs=1e-12)


def test_hand_values_spelled_out():
    assert cosine_lr(35, 1.0, 0.1, 10, 110) == pytest.approx(0.868198052, abs=1e-9)
    assert cosine_lr(85, 1.0, 0.1, 10, 110) == pytest.approx(0.231801948, abs=1e-9)


def test_zero_warmup_starts_at_max():
    assert cosine_lr(0, 6e-4, 6e-5, 0, 100) == pytest.approx(6e-4)
    assert cosine_lr(50, 6e-4, 6e-5, 0, 100) == pytest.approx(3.3e-4)
    assert cosine_lr(100, 6e-4, 6e-5, 0, 100) == pytest.approx(6e-5)


def test_monotone_up_then_down():
    lrs = [cosine_lr(it, 1.0, 0.1, 10, 110) for it in range(130)]
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_no_decay_phase_when_cycle_equals_warmup():
    assert cosine_lr(4, 1.0, 0.1, 5, 5) == pytest.approx(0.8)
    assert cosine_lr(5, 1.0, 0.1, 5, 5) == 0.1


@pytest.mark.parametrize(("it", "warmup", "cycle"), [(-1, 0, 10), (0, -1, 10), (0, 10, 5)])
def test_rejects_invalid(it, warmup, cycle):
    with pytest.raises(ValueError):
        cosine_lr(it, 1.0, 0.1, warmup, cycle)
