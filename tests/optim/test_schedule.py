"""``cosine_lr`` and ``wsd_lr`` against hand-computed tables, including the phase boundaries and zero warmup."""

import itertools
import math

import pytest

from cs336_lm.optim import cosine_lr, wsd_lr

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


# max 1.0, min 0.1, warmup 10, flat to step 80, decay over steps 80–100
WSD_TABLE = [
    (0, 0.0, 0.0),
    (5, 0.5, 0.5),
    (9, 0.9, 0.9),
    (10, 1.0, 1.0),  # end of warmup
    (50, 1.0, 1.0),  # stable
    (79, 1.0, 1.0),
    (80, 1.0, 1.0),  # the decay starts at its top
    (81, 0.955, 0.1 + (1 - math.sqrt(0.05)) * 0.9),  # 0.79875388...
    (85, 0.775, 0.55),  # a quarter: √¼ = ½
    (90, 0.55, 0.1 + (1 - math.sqrt(0.5)) * 0.9),  # 0.36360389...
    (99, 0.145, 0.1 + (1 - math.sqrt(0.95)) * 0.9),  # 0.12278850...
    (100, 0.1, 0.1),  # end of decay
    (101, 0.1, 0.1),
    (10_000, 0.1, 0.1),
]


@pytest.mark.parametrize(("it", "linear", "one_minus_sqrt"), WSD_TABLE)
def test_wsd_table(it, linear, one_minus_sqrt):
    assert wsd_lr(it, 1.0, 0.1, 10, 80, 100) == pytest.approx(linear, abs=1e-12)
    assert wsd_lr(it, 1.0, 0.1, 10, 80, 100, "1-sqrt") == pytest.approx(one_minus_sqrt, abs=1e-12)


def test_wsd_hand_values_spelled_out():
    assert wsd_lr(90, 1.0, 0.1, 10, 80, 100, "1-sqrt") == pytest.approx(0.363603896, abs=1e-9)
    assert wsd_lr(99, 1.0, 0.1, 10, 80, 100, "1-sqrt") == pytest.approx(0.122788509, abs=1e-9)


def test_wsd_zero_warmup_and_decay_from_the_start():
    assert wsd_lr(0, 6e-4, 6e-5, 0, 50, 100) == 6e-4
    assert wsd_lr(0, 6e-4, 6e-5, 0, 0, 100) == 6e-4  # all decay: a linear ramp down
    assert wsd_lr(50, 6e-4, 6e-5, 0, 0, 100) == pytest.approx(3.3e-4)
    assert wsd_lr(100, 6e-4, 6e-5, 0, 0, 100) == pytest.approx(6e-5)


def test_wsd_decay_right_after_warmup():
    assert wsd_lr(9, 1.0, 0.0, 10, 10, 20) == pytest.approx(0.9)
    assert wsd_lr(10, 1.0, 0.0, 10, 10, 20) == 1.0
    assert wsd_lr(15, 1.0, 0.0, 10, 10, 20) == pytest.approx(0.5)


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_monotone_up_flat_then_down(shape):
    lrs = [wsd_lr(it, 1.0, 0.1, 10, 80, 100, shape) for it in range(130)]
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))
    assert set(lrs[10:81]) == {1.0}
    assert all(a > b for a, b in itertools.pairwise(lrs[80:101]))
    assert set(lrs[100:]) == {0.1}


def test_wsd_below_cosine_only_at_the_end():
    """The point of wsd: the whole run at the peak rate but its last stretch, where cosine has long decayed."""
    assert wsd_lr(50, 1.0, 0.1, 10, 80, 100) > cosine_lr(50, 1.0, 0.1, 10, 100)


def test_wsd_no_decay_phase_when_start_equals_end():
    assert wsd_lr(99, 1.0, 0.1, 5, 100, 100) == 1.0
    assert wsd_lr(100, 1.0, 0.1, 5, 100, 100) == 0.1


@pytest.mark.parametrize(
    ("it", "warmup", "start", "end", "shape"),
    [(-1, 0, 5, 10, "linear"), (0, -1, 5, 10, "linear"), (0, 6, 5, 10, "linear"), (0, 0, 11, 10, "linear"),
     (0, 0, 5, 10, "cosine")],
)  # fmt: skip
def test_wsd_rejects_invalid(it, warmup, start, end, shape):
    with pytest.raises(ValueError):
        wsd_lr(it, 1.0, 0.1, warmup, start, end, shape)
