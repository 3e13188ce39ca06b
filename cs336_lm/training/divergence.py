"""The rule that calls a run diverged although its loss is still finite: the loss climbed far above where it began.

A healthy run's logged training loss never returns above its first step's (the loss of an untrained model, about
ln(vocab_size)); a learning rate too high for the model overshoots, and its loss climbs past that start within a few
hundred steps and often stays there or becomes NaN later. Stopping at the climb saves the steps in between, and
``lm-sweep`` records the trial as diverged rather than failed. A NaN/inf loss is caught in the step itself
(``NonFiniteLossError``).
"""

from __future__ import annotations

import math

from cs336_lm.errors import LossRoseError


def loss_rose(loss: float, first_loss: float | None, margin: float) -> bool:
    """Whether ``loss > first_loss + margin`` (``margin`` 0: never). Example: a first loss of 6.2 and a margin of 3
    call a logged loss of 9.3 diverged, and 9.1 not."""
    return margin > 0 and first_loss is not None and math.isfinite(first_loss) and loss > first_loss + margin


def loss_rise_error(loss: float, first_loss: float, margin: float, step: int, latest: object) -> LossRoseError:
    """The error that stops the run, naming the climb and ``latest``, the last checkpoint (None: none yet)."""
    return LossRoseError(
        f"the training loss rose to {loss:.4g} at step {step}, more than train.diverge_margin={margin:g} above its "
        f"first step's {first_loss:.4g}: the run diverged (last checkpoint: {latest or 'none'}). Lower optim.lr or "
        "raise optim.warmup_iters"
    )
