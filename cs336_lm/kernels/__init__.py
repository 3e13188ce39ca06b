"""Kernel dispatch: the one place that chooses between Triton kernels and the ``nn.functional`` reference.

``backend`` is ``"auto"`` (Triton when the tensor is on CUDA and Triton imports, else the reference),
``"triton"`` (Triton or an error) or ``"torch"`` (always the reference). The model passes its
``kernels`` setting through unchanged. The Triton modules are imported lazily, so CPU-only runs never
import Triton.
"""

import torch

from cs336_lm.nn import functional as F

BACKENDS = ("auto", "triton", "torch")


def _use_triton(x: torch.Tensor, backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"kernels backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    # The Triton paths are added by kernels/softmax.py and kernels/rmsnorm.py.
    return False


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, backend: str = "auto") -> torch.Tensor:
    """RMSNorm over the last dim: ``x / sqrt(mean(x²) + eps) * weight``, fp32 inside, input dtype out."""
    return F.rms_norm(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then RMSNorm: returns ``(rms_norm(x + residual), x + residual)``."""
    summed = x + residual
    return F.rms_norm(summed, weight, eps), summed


def softmax(x: torch.Tensor, dim: int = -1, backend: str = "auto") -> torch.Tensor:
    """Softmax along ``dim``."""
    return F.softmax(x, dim)


def causal_softmax(scores: torch.Tensor, scale: float, q_offset: int = 0, backend: str = "auto") -> torch.Tensor:
    """``softmax(scale · scores)`` over the last dim with key ``j`` hidden from query ``i`` when ``j > i + q_offset``.

    ``scores`` is ``(..., queries, keys)``; ``q_offset`` is the position of query 0 among the keys (the
    KV-cache length during decoding).
    """
    q, k = scores.shape[-2], scores.shape[-1]
    i = torch.arange(q, device=scores.device)[:, None]
    j = torch.arange(k, device=scores.device)[None, :]
    masked = (scores * scale).masked_fill(j > i + q_offset, float("-inf"))
    return F.softmax(masked, -1)
