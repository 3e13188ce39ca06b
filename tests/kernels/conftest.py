"""Where the kernel tests run and how close is close enough.

``target`` runs each test three ways: on CPU tensors through the Triton interpreter (the default run
without a GPU), natively on CUDA, and on CUDA inside ``torch.compile`` (both ``gpu``-marked). Tolerances
are per dtype: the kernels accumulate in fp32, so the error is about one rounding of the output dtype.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"

# (atol, rtol) of a result in this dtype against an fp32 reference
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1e-2, 1.6e-2),
}


@dataclass(frozen=True)
class Target:
    device: str
    compiled: bool

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` itself, or ``fn`` under ``torch.compile`` for the compiled target."""
        return torch.compile(fn) if self.compiled else fn


@pytest.fixture(
    params=[
        pytest.param(
            Target("cpu", False),
            id="interpreter",
            marks=pytest.mark.skipif(not INTERPRETING, reason="CUDA present: kernels compile natively"),
        ),
        pytest.param(Target("cuda", False), id="cuda", marks=pytest.mark.gpu),
        pytest.param(Target("cuda", True), id="cuda-compile", marks=pytest.mark.gpu),
    ]
)
def target(request) -> Target:
    if request.param.compiled:
        torch._dynamo.reset()
    return request.param


@pytest.fixture
def assert_close() -> Callable:
    """``assert_close(actual, expected, dtype, scale=1)``: ``actual`` must have ``dtype`` and be within that
    dtype's tolerance (times ``scale``, for sums over many rows) of the fp32 ``expected``."""

    def check(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
        atol, rtol = TOLERANCES[dtype]
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.float().cpu(), expected.float().cpu(), atol=atol * scale, rtol=rtol * scale)

    return check
