"""The learning-rate schedule: linear warmup, then a half-cosine from ``max_lr`` down to ``min_lr``, then flat.

``cosine_lr`` is a pure function of the step, so a resumed run recomputes exactly the rate it would have used;
the trainer writes the result into every optimizer param group before each step.
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
