"""Gradient clipping by the global L2 norm over all parameters, as ``torch.nn.utils.clip_grad_norm_`` does it.

The norm is taken over the concatenation of every gradient (parameters without one are skipped); when it exceeds
``max_norm`` every gradient is scaled by the same factor, so the update keeps its direction.
"""

from collections import defaultdict
from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_grad_norm_(params: Iterable[torch.Tensor], max_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients in place by ``min(1, max_norm / (‖g‖ + eps))``; return ``‖g‖`` (before clipping).

    ``‖g‖ = sqrt(Σ_p Σ_i g_{p,i}²)`` over every parameter with a gradient, computed as the norm of the
    per-tensor norms (one ``_foreach_norm`` per device and dtype). Example: grads (3, 4) and (0,) with
    ``max_norm=1`` → norm 5, grads become (0.6, 0.8)·5/(5 + 1e-6). The result is a 0-d float tensor on the
    gradients' device (no host sync); it is ``nan``/``inf`` when a gradient is, and then so are the gradients.
    With no gradients at all it is ``tensor(0.)``.
    """
    grads = [p.grad for p in ([params] if isinstance(params, torch.Tensor) else params) if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    by_device: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for g in grads:
        by_device[(g.device, g.dtype)].append(g)
    first_device = grads[0].device
    norms = [n.to(first_device) for group in by_device.values() for n in torch._foreach_norm(group, 2.0)]
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    for (device, _), group in by_device.items():
        torch._foreach_mul_(group, scale.to(device))
    return total
