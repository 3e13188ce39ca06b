"""AdamW (Loshchilov & Hutter, 2019): Adam's bias-corrected moments with weight decay decoupled from the gradient.

For every parameter θ with gradient g, at step t = 1, 2, … (per parameter group: lr α, betas β₁ β₂, eps ε, decay λ)::

    θ ← θ − α·λ·θ                                  (decoupled weight decay, applied first)
    m ← β₁·m + (1 − β₁)·g                          (first moment)
    v ← β₂·v + (1 − β₂)·g²                         (second moment)
    θ ← θ − α/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

This is the order and placement of ε that ``torch.optim.AdamW`` uses, and the operations run in torch's order, so
the two agree to rounding (the tests check 1e-6 after 1,000 steps). Folding √(1 − β₂ᵗ) into the step size and ε
would save one pass over the tensors but changes the rounding, and Adam's normalised step amplifies such
differences once gradients are near zero, so the trajectories drift apart by ~1e-3 on the toy problem.
On CUDA the update runs on the whole parameter list at once with ``torch._foreach_*`` kernels (one launch per op
for all tensors of a device/dtype, instead of one per tensor); on CPU it goes tensor by tensor, which keeps each
tensor's data in cache across the six ops and measured as fast or up to 1.2x faster there (docs/bench/train.md).
``adamw_update_`` is that update for one parameter group, shared with ``Muon``'s AdamW groups;
``param_groups_for_weight_decay`` splits a model's parameters so that only matrices decay.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


class AdamW(torch.optim.Optimizer):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=None)``.

    ``params`` is an iterable of tensors or of param-group dicts (e.g. from ``param_groups_for_weight_decay``);
    a group's ``lr`` may be changed between steps (the LR schedule does). Per-parameter state: ``step`` (int),
    ``exp_avg`` (m) and ``exp_avg_sq`` (v), in the parameter's dtype and device; ``state_dict()`` /
    ``load_state_dict()`` round-trip through ``torch.save``/``torch.load(weights_only=True)``. ``foreach``:
    True/False force the multi-tensor or per-tensor path; None picks foreach for CUDA parameters only.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool | None = None,
    ):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if not eps >= 0.0:
            raise ValueError(f"invalid eps {eps}: must be >= 0")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One AdamW update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = run_closure(closure)
        for group in self.param_groups:
            adamw_update_(group, [p for p in group["params"] if p.grad is not None], self.state)
        return loss


def adamw_update_(group: dict, params: list[torch.Tensor], state: dict) -> None:
    """One AdamW step of ``params`` (each with a gradient) under ``group``'s lr, betas, eps, weight_decay and foreach.

    ``state`` is the optimizer's per-parameter state (``Optimizer.state``); a parameter's entry is filled on its
    first step. ``AdamW.step`` runs this for each group, and an optimizer that holds AdamW groups beside groups of
    its own (``Muon``) calls it for those, so both compute exactly the same update.
    """
    if any(p.grad is not None and p.grad.is_sparse for p in params):
        raise RuntimeError("AdamW does not support sparse gradients")
    foreach = group["foreach"] if group["foreach"] is not None else bool(params) and params[0].is_cuda
    if foreach:
        _foreach_update(group, params, state)
    else:
        for p in params:
            _single_update(group, p, state)


def _state_for(state: dict, p: torch.Tensor) -> dict:
    """The state of ``p``, created on first use (zero moments, step 0), with its step advanced by one."""
    s = state[p]
    if not s:
        s["step"] = 0
        s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    s["step"] = int(s["step"]) + 1
    return s


def _single_update(group: dict, p: torch.Tensor, state: dict) -> None:
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    s = _state_for(state, p)
    m, v, t = s["exp_avg"], s["exp_avg_sq"], s["step"]
    if wd != 0:
        p.mul_(1 - lr * wd)
    m.lerp_(p.grad, 1 - beta1)
    v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
    denom = v.sqrt().div_((1 - beta2**t) ** 0.5).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))


def _foreach_update(group: dict, params: list[torch.Tensor], state: dict) -> None:
    # foreach kernels need one device and dtype per call, and the bias correction needs one step count,
    # so bucket by (device, dtype, step); in ordinary training that is one bucket per device and dtype.
    buckets: dict[tuple, list[tuple[torch.Tensor, dict]]] = defaultdict(list)
    for p in params:
        s = _state_for(state, p)
        buckets[(p.device, p.dtype, s["step"])].append((p, s))
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    for (_, _, t), items in buckets.items():
        ps = [p for p, _ in items]
        grads = [p.grad for p in ps if p.grad is not None]  # the buckets hold parameters with gradients
        ms = [s["exp_avg"] for _, s in items]
        vs = [s["exp_avg_sq"] for _, s in items]
        if wd != 0:
            torch._foreach_mul_(ps, 1 - lr * wd)
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(ps, ms, denom, -lr / (1 - beta1**t))


def param_groups_for_weight_decay(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``model``'s trainable parameters into a decayed group and an undecayed one.

    Tensors with two or more dimensions (the Linear weights and the embedding/LM-head matrices) get
    ``weight_decay``; one-dimensional ones (RMSNorm gains — a decayed gain would pull the normalised activations
    toward zero, which no loss term asks for) get 0. Returns ``[{"name": "decay", "params": [...],
    "weight_decay": weight_decay}, {"name": "no_decay", "params": [...], "weight_decay": 0.0}]``, leaving out an
    empty group; pass the list straight to ``AdamW``. Shared (tied) parameters appear once.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def run_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """``closure()`` with gradients on (an optimizer's ``step`` runs under ``no_grad``), or None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
