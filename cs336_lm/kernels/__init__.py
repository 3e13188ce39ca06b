"""Kernel dispatch: the one place that chooses between Triton kernels and the ``nn.functional`` reference.

``backend`` is ``"auto"`` (Triton when the tensor is on CUDA, has a float32/float16/bfloat16 dtype and
Triton imports, else the reference), ``"triton"`` (Triton or a ``ConfigError`` saying why not; CPU tensors
are accepted when ``TRITON_INTERPRET=1``, which is how the tests run the kernels without a GPU) or
``"torch"`` (always the reference). The model passes its ``kernels`` setting through unchanged. The Triton
modules (``rmsnorm.py``, ``row_softmax.py``) are imported lazily, so CPU-only runs never import Triton.
(The softmax module is not called ``softmax.py``: importing a submodule binds its name on this package,
which would replace the ``softmax`` function below with the module.)
"""

import os

import torch
from jaxtyping import Float

from cs336_lm.errors import ConfigError

BACKENDS = ("auto", "triton", "torch")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _reference():
    """``cs336_lm.nn.functional``, imported on first use: ``cs336_lm.nn`` itself imports this package."""
    from cs336_lm.nn import functional

    return functional


# Memo of _triton_import_problem(), filled on first use. (Not functools.cache: torch.compile traces through
# a plain list lookup without warnings, and torch.compiler's decorators would import Triton via torch._dynamo.)
_IMPORT_PROBLEM: list[str | None] = []


def _triton_import_problem() -> str | None:
    """``None`` when ``import triton`` works, else why it does not (tried once per process)."""
    if not _IMPORT_PROBLEM:
        try:
            import triton  # noqa: F401
        except Exception as e:  # a broken install can fail with more than ImportError
            _IMPORT_PROBLEM.append(f"triton does not import ({type(e).__name__}: {e})")
        else:
            _IMPORT_PROBLEM.append(None)
    return _IMPORT_PROBLEM[0]


def _triton_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the Triton kernels cannot run on this tensor, or ``None`` when they can."""
    if dtype not in TRITON_DTYPES:
        return f"dtype {dtype} is not supported (float32, float16 or bfloat16)"
    interpreted = device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    if device.type != "cuda" and not interpreted:
        return f"the tensor is on {device}; Triton needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors)"
    return _triton_import_problem()


def _use_triton(device: torch.device, dtype: torch.dtype, backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"kernels backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return False  # the common CPU case returns before any environment or import check
    problem = _triton_problem(device, dtype)
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
    if _use_triton(x.device, x.dtype, backend):
        from cs336_lm.kernels.rmsnorm import triton_rms_norm

        return triton_rms_norm(x, weight, eps)
    return _reference().rms_norm(x, weight, eps)


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
    dtype = torch.promote_types(x.dtype, residual.dtype)
    if _use_triton(x.device, dtype, backend):
        from cs336_lm.kernels.rmsnorm import triton_add_rms_norm

        return triton_add_rms_norm(x.to(dtype), residual.to(dtype), weight, eps)
    summed = x + residual
    return _reference().rms_norm(summed, weight, eps), summed


def softmax(x: Float[torch.Tensor, "..."], dim: int = -1, backend: str = "auto") -> Float[torch.Tensor, "..."]:
    """Softmax along ``dim``: ``exp(x - max) / Σ exp(x - max)``; the Triton path works on the last dim."""
    if _use_triton(x.device, x.dtype, backend):
        from cs336_lm.kernels.row_softmax import triton_softmax

        return triton_softmax(x.movedim(dim, -1)).movedim(-1, dim)
    return _reference().softmax(x, dim)


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
    if _use_triton(scores.device, scores.dtype, backend):
        from cs336_lm.kernels.row_softmax import triton_causal_softmax

        return triton_causal_softmax(scores, scale, q_offset)
    return _reference().causal_softmax(scores, scale, q_offset)
