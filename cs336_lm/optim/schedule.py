"""The learning-rate schedules: linear warmup, then a half-cosine from ``max_lr`` down to ``min_lr`` (``cosine_lr``), or
flat at ``max_lr`` until a final linear or 1 − √ decay (``wsd_lr``, warmup–stable–decay); ``min_lr`` after either.

Each is a pure function of the step, so a resumed run recomputes exactly the rate it would have used; the trainer
scales every optimizer param group's peak rate by the schedule's ``rate / max_lr`` before each step.
"""

import math


def cosine_lr(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """The learning rate at step ``it`` (0-based)::

        it < warmup_iters:                    it / warmup_iters · max_lr
        warmup_iters ≤ it ≤ cosine_cycle:     min_lr + ½(1 + cos(π (it − warmup) / (cycle − warmup))) (max_lr − min_lr)
        it > cosine_cycle_iters:              min_lr

    ``cosine_cycle_iters`` is the absolute step where the decay ends (not the length of the decay). Example with
    max 1, min 0.1, warmup 10, cycle 110: step 0 → 0, 5 → 0.5, 10 → 1, 60 → 0.55, 110 → 0.1, 200 → 0.1. With
    ``warmup_iters == cosine_cycle_iters`` there is no decay phase: ``min_lr`` from that step on.
    """
    if it < 0 or warmup_iters < 0:
        raise ValueError(f"step ({it}) and warmup_iters ({warmup_iters}) must be >= 0")
    if cosine_cycle_iters < warmup_iters:
        raise ValueError(f"cosine_cycle_iters ({cosine_cycle_iters}) must be >= warmup_iters ({warmup_iters})")
    if it < warmup_iters:
        return it / warmup_iters * max_lr
    if it > cosine_cycle_iters or cosine_cycle_iters == warmup_iters:
        return min_lr
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


WSD_DECAY_SHAPES = ("linear", "1-sqrt")


def wsd_lr(
    it: int, max_lr: float, min_lr: float, warmup_iters: int, decay_start: int, decay_end: int, shape: str = "linear"
) -> float:
    """Warmup–stable–decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations"): the learning rate at step ``it`` (0-based)::

        it < warmup_iters:                    it / warmup_iters · max_lr
        warmup_iters ≤ it < decay_start:      max_lr
        decay_start ≤ it < decay_end:         max_lr − f(p) (max_lr − min_lr),  p = (it − start) / (end − start)
        it ≥ decay_end:                       min_lr

    with f(p) = p (``"linear"``) or √p (``"1-sqrt"``, which leaves the flat phase faster and ends more gently).
    ``decay_start`` and ``decay_end`` are absolute steps, as ``cosine_lr``'s cycle end is. Example with max 1,
    min 0.1, warmup 10, decay over steps 80–100, linear: step 5 → 0.5, 10 → 1, 79 → 1, 80 → 1, 90 → 0.55,
    100 → 0.1, 150 → 0.1; 1-sqrt at 85: 1 − ½·0.9 = 0.55. The decay starts at exactly ``max_lr`` and ends at
    exactly ``min_lr``. With ``decay_start == decay_end`` there is no decay phase: ``min_lr`` from that step on.
    """
    if it < 0 or warmup_iters < 0:
        raise ValueError(f"step ({it}) and warmup_iters ({warmup_iters}) must be >= 0")
    if not warmup_iters <= decay_start <= decay_end:
        raise ValueError(
            f"need warmup_iters ({warmup_iters}) <= decay_start ({decay_start}) <= decay_end ({decay_end})"
        )
    if shape not in WSD_DECAY_SHAPES:
        raise ValueError(f"invalid shape {shape!r}: must be one of {', '.join(WSD_DECAY_SHAPES)}")
    if it < warmup_iters:
        return it / warmup_iters * max_lr
    if it < decay_start:
        return max_lr
    if it >= decay_end:
        return min_lr
    progress = (it - decay_start) / (decay_end - decay_start)
    done = progress if shape == "linear" else math.sqrt(progress)
    return max_lr - done * (max_lr - min_lr)
