"""Dynamic loss scaling for fp16 training: keep small gradients representable in float16, skip steps that overflow.

Under fp16 autocast the backward pass runs through float16 matmuls, whose smallest normal value is 6.1e-5:
gradients below it flush to zero. Multiplying the loss by a scale ``S`` (2^16 at first) multiplies every gradient
by ``S`` on the way back, lifting them into range; before clipping and the optimizer step they are divided by
``S`` again (exactly, as ``S`` is a power of two). When a scaled gradient overflows to inf (or becomes nan), that
step is skipped and ``S`` halves; after ``growth_interval`` consecutive good steps ``S`` doubles. These are the
semantics of ``torch.amp.GradScaler`` (Micikevicius et al. 2018, "Mixed Precision Training", §3.2), written out
here so the loop owns them: the found-inf flag is all-reduced with the step's loss (every rank skips together),
its state is a plain dict inside each checkpoint, and the skipped steps are counted for the logs.

bf16 and fp32 need no scaling (bf16 has fp32's exponent range): a disabled scaler is the identity and never skips.
"""

from __future__ import annotations

import math

import torch


class LossScaler:
    """Scale the loss, unscale and check the gradients, and decide whether each step is applied.

    One step: ``scaler.scale(loss).backward()`` for each micro-batch; ``found = scaler.unscale_(grads)``
    (1.0 where a gradient is inf/nan; sum it over ranks); ``if scaler.update(found > 0): optimizer.step()``.
    Example with ``growth_interval=2``: steps ok, inf, ok, ok give scales 2^16 → 2^15 (skipped) → 2^15 → 2^16.
    """

    def __init__(
        self,
        enabled: bool,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        if not (growth_factor > 1 and 0 < backoff_factor < 1 and growth_interval > 0 and init_scale > 0):
            raise ValueError("need growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0, init_scale > 0")
        self.enabled = enabled
        self.scale_value = float(init_scale)
        """The current scale S (a power of two with the default factors)."""
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.good_steps = 0
        """Consecutive steps without overflow since the scale last changed (GradScaler's growth tracker)."""
        self.skipped_steps = 0
        """Steps skipped for overflow over the whole run."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss · S`` to call ``backward`` on (``loss`` itself when disabled)."""
        return loss * self.scale_value if self.enabled else loss

    @torch.no_grad()
    def unscale_(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Divide ``grads`` by S in place; return a 0-d float tensor, 1.0 when any of them is inf or nan.

        Non-finiteness is read off the sum of the per-tensor norms (one ``_foreach_norm`` pass, no host sync): an
        inf or nan anywhere makes it non-finite. When disabled the gradients are left alone and the flag is 0.
        """
        device = grads[0].device if grads else torch.device("cpu")
        if not self.enabled or not grads:
            return torch.zeros((), device=device)
        torch._foreach_mul_(grads, 1.0 / self.scale_value)
        total = torch.stack(torch._foreach_norm(grads, 2.0)).sum()
        return (~torch.isfinite(total)).to(torch.float32)

    def update(self, found_inf: bool) -> bool:
        """Adjust S after a step whose gradients did (``found_inf``) or did not overflow; True: apply the step.

        Overflow: S ·= backoff_factor, the good-step count restarts and the step is skipped. Otherwise the count
        grows, and at ``growth_interval`` S ·= growth_factor (unless that would overflow float32) and it restarts.
        """
        if not self.enabled:
            return True
        if found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
            self.skipped_steps += 1
            return False
        self.good_steps += 1
        if self.good_steps == self.growth_interval:
            grown = self.scale_value * self.growth_factor
            if math.isfinite(grown) and grown <= torch.finfo(torch.float32).max:
                self.scale_value = grown
            self.good_steps = 0
        return True

    def state_dict(self) -> dict[str, float | int]:
        """Plain numbers for the checkpoint: what a resumed run needs to scale exactly as an uninterrupted one."""
        return {
            "scale": self.scale_value,
            "good_steps": self.good_steps,
            "skipped_steps": self.skipped_steps,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` saved."""
        self.scale_value = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
