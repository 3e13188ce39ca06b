"""The Triton RMSNorm and fused residual-add + RMSNorm against torch's rms_norm (fp32) and nn.functional."""

import dataclasses

import pytest
import torch

pytest.importorskip("triton")

from cs336_lm.kernels.rmsnorm import (
    CPU_BACKWARD_PROGRAMS,
    MAX_BLOCK,
    backward_programs,
    launch_params,
    triton_add_rms_norm,
    triton_rms_norm,
)
from cs336_lm.nn import functional

SHAPES = [(1, 8), (4, 1), (3,), (5, 123), (7, 1000), (2, 3, 37)]
EPS = 1e-5


def reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.rms_norm`` in fp32."""
    return torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), weight.float(), EPS)


def grads(outputs, inputs, cotangents):
    """Gradients of ``Σ outputs ⊙ cotangents`` wrt ``inputs`` on the CPU (zeros for inputs not used)."""
    found = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True, materialize_grads=True)
    return [g.cpu() for g in found]


def check_rms_norm(target, assert_close, shape, dtype, max_block=MAX_BLOCK, weight_dtype=None):
    torch.manual_seed(0)
    x = (2 * torch.randn(shape)).to(dtype)
    w = (1 + 0.5 * torch.randn(shape[-1])).to(weight_dtype or dtype)
    dy = torch.randn(shape).to(dtype)
    xd, wd = (t.to(target.device).requires_grad_() for t in (x, w))
    y = target.wrap(lambda a, b: triton_rms_norm(a, b, EPS, max_block))(xd, wd)
    dx, dw = grads(y, (xd, wd), dy.to(target.device))
    x32, w32 = (t.float().requires_grad_() for t in (x, w))
    y_ref = reference(x32, w32)
    dx_ref, dw_ref = grads(y_ref, (x32, w32), dy.float())
    assert_close(y.detach().cpu(), y_ref, dtype)
    assert_close(dx, dx_ref, dtype)
    rows = x.numel() // shape[-1]
    assert_close(dw, dw_ref, weight_dtype or dtype, scale=max(1.0, rows**0.5))  # a sum over rows


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rms_norm_matches_torch_fp32(target, assert_close, shape):
    check_rms_norm(target, assert_close, shape, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(5, 123), (2, 3, 37)], ids=str)
def test_rms_norm_low_precision(target, assert_close, shape, dtype):
    check_rms_norm(target, assert_close, shape, dtype)


def test_rms_norm_fp32_weight_with_bf16_input(target, assert_close):
    check_rms_norm(target, assert_close, (6, 40), torch.bfloat16, weight_dtype=torch.float32)


@pytest.mark.parametrize(
    ("shape", "max_block", "dtype"),
    [((7, 1000), 128, torch.float32), ((3, 50), 16, torch.float32), ((2, 3, 37), 16, torch.bfloat16)],
    ids=str,
)
def test_rms_norm_rows_wider_than_a_block(target, assert_close, shape, max_block, dtype):
    assert not launch_params(shape[0], shape[-1], max_block).single_block  # the looping path runs
    check_rms_norm(target, assert_close, shape, dtype, max_block)


@pytest.mark.parametrize("max_block", [MAX_BLOCK, 16])
def test_weight_gradient_over_many_programs(target, assert_close, max_block):
    # 600 rows of 40 make 19 backward tiles (32 rows each); 4 programs on the interpreter take 4-5 tiles each.
    p = launch_params(600, 40, max_block, "backward")
    assert -(-600 // p.rows) > CPU_BACKWARD_PROGRAMS
    check_rms_norm(target, assert_close, (600, 40), torch.float32, max_block)


def fused_case(target, shape, dtype, max_block, use):
    """Run the fused op and the unfused fp32 reference; ``use`` picks which outputs the loss reads."""
    torch.manual_seed(1)
    x, res = (torch.randn(shape).to(dtype) for _ in range(2))
    w = (1 + 0.5 * torch.randn(shape[-1])).to(dtype)
    dy, dsum = (torch.randn(shape).to(dtype) for _ in range(2))

    def loss_terms(normed, summed, dy, dsum):
        return {"normed": [(normed, dy)], "sum": [(summed, dsum)], "both": [(normed, dy), (summed, dsum)]}[use]

    leaves = [t.to(target.device).requires_grad_() for t in (x, res, w)]
    normed, summed = target.wrap(lambda a, b, c: triton_add_rms_norm(a, b, c, EPS, max_block))(*leaves)
    terms = loss_terms(normed, summed, dy.to(target.device), dsum.to(target.device))
    outputs, cotangents = zip(*terms, strict=True)
    ours = [normed.detach().cpu(), summed.detach().cpu(), *grads(outputs, leaves, cotangents)]

    leaves32 = [t.float().requires_grad_() for t in (x, res, w)]
    summed32 = (leaves32[0] + leaves32[1]).to(dtype).float()  # the residual stream is stored in `dtype`
    normed32 = reference(summed32, leaves32[2])
    terms = loss_terms(normed32, summed32, dy.float(), dsum.float())
    outputs, cotangents = zip(*terms, strict=True)
    expected = [normed32.detach(), summed32.detach(), *grads(outputs, leaves32, cotangents)]
    return ours, expected


@pytest.mark.parametrize(
    ("shape", "dtype", "max_block"),
    [((5, 123), torch.float32, MAX_BLOCK), ((2, 3, 37), torch.bfloat16, MAX_BLOCK), ((7, 1000), torch.float32, 128)],
    ids=str,
)
@pytest.mark.parametrize("use", ["both", "normed", "sum"])
def test_add_rms_norm_matches_unfused(target, assert_close, shape, dtype, max_block, use):
    ours, expected = fused_case(target, shape, dtype, max_block, use)
    names = ["normed", "sum", "d_x", "d_residual", "d_weight"]
    for name, a, b in zip(names, ours, expected, strict=True):
        rows = ours[0].numel() // shape[-1]
        scale = max(1.0, rows**0.5) if name == "d_weight" else 1.0  # d_weight is a sum over rows
        assert_close(a, b, dtype, scale), name
    assert torch.equal(ours[2], ours[3])  # x and residual enter as a sum: equal gradients


def test_add_rms_norm_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="must match"):
        triton_add_rms_norm(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.float64), torch.ones(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_matches_nn_functional(target, assert_close, dtype):
    # The kernel against the reference the model runs without it (on the CPU, in fp32 inside).
    torch.manual_seed(2)
    x, w = torch.randn(3, 5, 48).to(dtype), torch.randn(48).to(dtype)
    got = target.wrap(triton_rms_norm)(x.to(target.device), w.to(target.device), EPS)
    assert_close(got, functional.rms_norm(x, w, EPS).float(), dtype)


def test_launch_params_rules():
    assert launch_params(4096, 768) == type(launch_params(1, 1))(block=1024, rows=4, num_warps=8, single_block=True)
    assert launch_params(2, 8192).rows == 1 and launch_params(2, 8192).num_warps == 16
    # The backward keeps more values live per element: half the tile, 4 elements per thread.
    assert launch_params(4096, 512, pass_="backward") == dataclasses.replace(
        launch_params(4096, 512), rows=4, num_warps=16
    )
    assert launch_params(64, 8192, pass_="backward").num_warps == 32
    wide = launch_params(4, 20000)
    assert (wide.block, wide.single_block) == (MAX_BLOCK, False)
    assert backward_programs(1, torch.device("cpu")) == 1
    assert backward_programs(1000, torch.device("cpu")) == CPU_BACKWARD_PROGRAMS
    with pytest.raises(ValueError, match="power of two"):
        launch_params(4, 100, max_block=48)


def test_wrong_weight_shape_is_an_error():
    with pytest.raises(ValueError, match="weight has shape"):
        triton_rms_norm(torch.zeros(2, 4), torch.ones(5))


def test_empty_input(target):
    x = torch.zeros(0, 6, device=target.device, requires_grad=True)
    w = torch.ones(6, device=target.device, requires_grad=True)
    y = triton_rms_norm(x, w)
    y.sum().backward()
    assert y.shape == (0, 6) and torch.equal(w.grad.cpu(), torch.zeros(6))
