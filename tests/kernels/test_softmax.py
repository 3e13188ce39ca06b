"""The Triton softmax and scaled causal softmax against torch's softmax (fp32) and our nn.functional ops."""

import pytest
import torch

pytest.importorskip("triton")

from cs336_lm.kernels.softmax import MAX_BLOCK, launch_params, triton_causal_softmax, triton_softmax
from cs336_lm.nn import functional

SHAPES = [(1, 7), (4, 1), (3,), (5, 123), (7, 1000), (2, 3, 37)]


def forward_backward(target, fn, x: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(x), dL/dx)`` for ``L = Σ fn(x) ⊙ dy``, run on ``target``; results are returned on the CPU."""
    x = x.detach().to(target.device).requires_grad_()
    y = target.wrap(fn)(x)
    (dx,) = torch.autograd.grad(y, x, dy.to(target.device))
    return y.detach().cpu(), dx.cpu()


def masked_reference(scores: torch.Tensor, scale: float, q_offset: int) -> torch.Tensor:
    """``torch.softmax`` of the scaled scores with ``-inf`` where key ``j > i + q_offset``."""
    q, k = scores.shape[-2:]
    hidden = torch.arange(k)[None, :] > torch.arange(q)[:, None] + q_offset  # (q, k)
    return torch.softmax((scores * scale).masked_fill(hidden, float("-inf")), dim=-1)


def check_softmax(target, assert_close, shape, dtype, max_block=MAX_BLOCK):
    x = (3 * torch.randn(shape)).to(dtype)
    dy = torch.randn(shape).to(dtype)
    y, dx = forward_backward(target, lambda t: triton_softmax(t, max_block=max_block), x, dy)
    y_ref, dx_ref = forward_backward(
        type(target)("cpu", False), lambda t: torch.softmax(t, dim=-1), x.float(), dy.float()
    )
    assert_close(y, y_ref, dtype)
    assert_close(dx, dx_ref, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_matches_torch_fp32(target, assert_close, shape):
    torch.manual_seed(0)
    check_softmax(target, assert_close, shape, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(5, 123), (2, 3, 37)], ids=str)
def test_softmax_low_precision(target, assert_close, shape, dtype):
    torch.manual_seed(1)
    check_softmax(target, assert_close, shape, dtype)


@pytest.mark.parametrize(
    ("shape", "max_block", "dtype"),
    [((7, 1000), 128, torch.float32), ((3, 50), 16, torch.float32), ((2, 3, 37), 16, torch.bfloat16)],
    ids=str,
)
def test_softmax_rows_wider_than_a_block(target, assert_close, shape, max_block, dtype):
    assert not launch_params(shape[0], shape[-1], max_block).single_block  # the looping path runs
    torch.manual_seed(2)
    check_softmax(target, assert_close, shape, dtype, max_block)


@pytest.mark.parametrize("max_block", [MAX_BLOCK, 16])
def test_softmax_large_and_infinite_logits(target, max_block):
    # Huge logits must not overflow; -inf entries get probability 0; a block of only -inf is skipped safely.
    x = torch.tensor([[1e4, 1e4 - 1.0, -1e4] + [float("-inf")] * 20, [float("-inf")] * 20 + [0.0, 1.0, 2.0]])
    y, _ = forward_backward(target, lambda t: triton_softmax(t, max_block=max_block), x, torch.ones_like(x))
    torch.testing.assert_close(y, torch.softmax(x, dim=-1))
    torch.testing.assert_close(y[0, :2], torch.tensor([0.7310586, 0.2689414]))


@pytest.mark.parametrize(
    ("shape", "q_offset", "max_block", "dtype"),
    [
        ((2, 3, 5, 5), 0, MAX_BLOCK, torch.float32),
        ((2, 4, 9), 5, MAX_BLOCK, torch.float32),  # prefill after a 5-token KV cache
        ((1, 1, 10), 9, MAX_BLOCK, torch.float32),  # one decoding step: every key visible
        ((1, 6, 6), 0, MAX_BLOCK, torch.bfloat16),
        ((2, 20, 40), 20, 16, torch.float32),  # looping path
        ((3, 7, 12), 2, 16, torch.float16),
    ],
    ids=str,
)
def test_causal_softmax_matches_masked_reference(target, assert_close, shape, q_offset, max_block, dtype):
    torch.manual_seed(3)
    scale = 0.37
    scores = (4 * torch.randn(shape)).to(dtype)
    dy = torch.randn(shape).to(dtype)
    y, dx = forward_backward(target, lambda t: triton_causal_softmax(t, scale, q_offset, max_block), scores, dy)
    cpu = type(target)("cpu", False)
    y_ref, dx_ref = forward_backward(cpu, lambda t: masked_reference(t, scale, q_offset), scores.float(), dy.float())
    assert_close(y, y_ref, dtype)
    assert_close(dx, dx_ref, dtype)
    q, k = shape[-2:]
    hidden = (torch.arange(k)[None, :] > torch.arange(q)[:, None] + q_offset).expand(shape)
    assert (y[hidden] == 0).all() and (dx[hidden] == 0).all()  # exact zeros, not just small


def test_causal_softmax_rejects_negative_offset():
    with pytest.raises(ValueError, match="q_offset"):
        triton_causal_softmax(torch.zeros(2, 3, 3), 1.0, -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_matches_nn_functional(target, assert_close, dtype):
    # The kernels against the reference the model runs without them (on the CPU, in fp32 inside).
    torch.manual_seed(4)
    x = torch.randn(3, 6, 6).to(dtype)
    on_target = x.to(target.device)
    assert_close(target.wrap(triton_softmax)(on_target), functional.softmax(x, -1).float(), dtype)
    causal = target.wrap(triton_causal_softmax)(on_target, 0.5, 1)
    assert_close(causal, functional.causal_softmax(x, 0.5, 1).float(), dtype)


def test_launch_params_rules():
    # Short rows share a program; rows that fit take one block; wider rows loop over max_block blocks.
    assert launch_params(4096, 123) == type(launch_params(1, 1))(block=128, rows=32, num_warps=8, single_block=True)
    assert launch_params(3, 123).rows == 4  # never more rows than the (rounded-up) input has
    assert launch_params(1, 1).block == 16
    wide = launch_params(8, 50257)
    assert (wide.block, wide.rows, wide.num_warps, wide.single_block) == (MAX_BLOCK, 1, 16, False)
    assert launch_params(64, 8192).single_block
    with pytest.raises(ValueError, match="power of two"):
        launch_params(4, 100, max_block=100)


def test_empty_input(target):
    x = torch.zeros(0, 5, device=target.device)
    assert triton_softmax(x).shape == (0, 5)
    assert triton_causal_softmax(torch.zeros(2, 0, 0, device=target.device), 1.0).shape == (2, 0, 0)
