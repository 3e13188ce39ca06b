"""The kernel dispatch: the one place that chooses between a Triton kernel and the ``nn.functional`` reference.

The modules call these four ops with their ``kernels`` setting, one of ``KERNEL_BACKENDS``: ``"auto"`` (Triton
when the tensor is on CUDA, has a float32/float16/bfloat16 dtype and Triton imports, else the reference),
``"triton"`` (Triton or a ``ConfigError`` saying why not; CPU tensors are accepted when ``TRITON_INTERPRET=1``,
which is how the tests run the kernels without a GPU) or ``"torch"`` (always the reference). The kernel
modules are imported on first use, so CPU-only runs never import Triton.
"""

import torch
from jaxtyping import Float

from cs336_lm import kernels
from cs336_lm.errors import ConfigError
from cs336_lm.nn import functional as F

KERNEL_BACKENDS = ("auto", "triton", "torch")


def check_backend(backend: str) -> str:
    """``backend`` itself when it is one of ``KERNEL_BACKENDS``, else ``ValueError``."""
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"kernels backend must be one of {KERNEL_BACKENDS}, got {backend!r}")
    return backend


def use_triton(device: torch.device, dtype: torch.dtype, backend: str) -> bool:
    """Whether ``backend`` runs the Triton kernel on a tensor of this device and dtype (see the module doc)."""
    check_backend(backend)
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return False  # the common CPU case returns before any environment or import check
    problem = kernels.triton_problem(device, dtype)
    if backend == "auto":
        return problem is None
    if problem is not None:
        raise ConfigError(f"kernels='triton' cannot run: {problem}")
    return True


def rms_norm(
    x: Float[torch.Tensor, "... d_model"],
    weight: Float[torch.Tensor, " d_model"],
    eps: float = 1e-5,
    backend: str = "auto",
) -> Float[torch.Tensor, "... d_model"]:
    """RMSNorm over the last dim: ``x / sqrt(mean(x²) + eps) * weight``, fp32 inside, input dtype out."""
    if use_triton(x.device, x.dtype, backend):
        from cs336_lm.kernels.rmsnorm import triton_rms_norm

        return triton_rms_norm(x, weight, eps)
    return F.rms_norm(x, weight, eps)


def add_rms_norm(
    x: Float[torch.Tensor, "... d_model"],
    residual: Float[torch.Tensor, "... d_model"],
    weight: Float[torch.Tensor, " d_model"],
    eps: float = 1e-5,
    backend: str = "auto",
) -> tuple[Float[torch.Tensor, "... d_model"], Float[torch.Tensor, "... d_model"]]:
    """Residual add then RMSNorm: returns ``(rms_norm(x + residual), x + residual)``.

    The Triton path does both in one pass (the sum is rounded to the input dtype before it is normalised,
    exactly as the two separate ops would); gradients reach ``x``, ``residual`` and ``weight``.
    """
    dtype = x.dtype if x.dtype == residual.dtype else torch.promote_types(x.dtype, residual.dtype)
    if use_triton(x.device, dtype, backend):
        from cs336_lm.kernels.rmsnorm import triton_add_rms_norm

        return triton_add_rms_norm(x.to(dtype), residual.to(dtype), weight, eps)
    summed = x + residual
    return F.rms_norm(summed, weight, eps), summed


def softmax(x: Float[torch.Tensor, "..."], dim: int = -1, backend: str = "auto") -> Float[torch.Tensor, "..."]:
    """Softmax along ``dim``: ``exp(x - max) / Σ exp(x - max)``; the Triton path works on the last dim."""
    if use_triton(x.device, x.dtype, backend):
        from cs336_lm.kernels.softmax import triton_softmax

        return triton_softmax(x.movedim(dim, -1)).movedim(-1, dim)
    return F.softmax(x, dim)


def causal_softmax(
    scores: Float[torch.Tensor, "... queries keys"], scale: float, q_offset: int = 0, backend: str = "auto"
) -> Float[torch.Tensor, "... queries keys"]:
    """``softmax(scale · scores)`` over the last dim with key ``j`` hidden from query ``i`` when ``j > i + q_offset``.

    ``scores`` is ``(..., queries, keys)``; ``q_offset`` is the position of query 0 among the keys (the
    KV-cache length during decoding). It must be ``>= 0``: then key 0 is visible to every query and no row
    is fully masked. Hidden entries are exact zeros.
    """
    if q_offset < 0:
        raise ValueError(f"q_offset must be >= 0 (a negative offset leaves rows fully masked), got {q_offset}")
    if use_triton(scores.device, scores.dtype, backend):
        from cs336_lm.kernels.softmax import triton_causal_softmax

        return triton_causal_softmax(scores, scale, q_offset)
    return F.causal_softmax(scores, scale, q_offset)
