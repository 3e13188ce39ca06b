"""Triton kernels with their autograd Functions: the ground floor of the package.

``softmax`` (plain and scaled causal softmax over the last dim) and ``rmsnorm`` (RMSNorm and the fused
residual add + RMSNorm), forward and backward, sharing the launch rules of ``launch``. These modules import
torch, triton and ``cs336_lm.errors`` only; the model layer's dispatch (``cs336_lm.nn.dispatch``) chooses
between them and the ``cs336_lm.nn.functional`` reference. This ``__init__`` imports nothing that needs
Triton: it only says whether the kernels can run, so CPU-only processes never import Triton.
"""

import os

import torch

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Memo of triton_import_problem(), filled on first use. (Not functools.cache: torch.compile traces through
# a plain list lookup without warnings, and torch.compiler's decorators would import Triton via torch._dynamo.)
_IMPORT_PROBLEM: list[str | None] = []


def triton_import_problem() -> str | None:
    """``None`` when ``import triton`` works, else why it does not (tried once per process)."""
    if not _IMPORT_PROBLEM:
        try:
            import triton  # noqa: F401
        except Exception as e:  # a broken install can fail with more than ImportError
            _IMPORT_PROBLEM.append(f"triton does not import ({type(e).__name__}: {e})")
        else:
            _IMPORT_PROBLEM.append(None)
    return _IMPORT_PROBLEM[0]


def interpreting() -> bool:
    """Whether Triton runs kernels through its interpreter on CPU tensors (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the kernels cannot run on a tensor of this device and dtype, or ``None`` when they can."""
    if dtype not in TRITON_DTYPES:
        return f"dtype {dtype} is not supported (float32, float16 or bfloat16)"
    if device.type != "cuda" and not (device.type == "cpu" and interpreting()):
        return f"the tensor is on {device}; Triton needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors)"
    return triton_import_problem()
