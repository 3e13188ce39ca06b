"""``clip_grad_norm_`` against ``torch.nn.utils.clip_grad_norm_``: same norm, same clipped gradients."""

import pytest
import torch
from torch import nn

from cs336_lm.optim import clip_grad_norm_


def _twin_params(shapes, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ours, ref = [], []
    for shape in shapes:
        p = nn.Parameter(torch.randn(shape, generator=gen))
        q = nn.Parameter(p.detach().clone())
        if shape is not None:
            g = torch.randn(shape, generator=gen) * scale
            p.grad, q.grad = g.clone(), g.clone()
        ours.append(p)
        ref.append(q)
    return ours, ref


@pytest.mark.parametrize("scale", [1e-3, 0.05, 1.0, 30.0])
@pytest.mark.parametrize("max_norm", [0.5, 1.0, 10.0])
def test_matches_torch(scale, max_norm):
    shapes = [(7, 5), (5,), (3, 2, 4), (1,)]
    ours, ref = _twin_params(shapes, scale)
    ours[1].grad = None  # parameters without a gradient are skipped
    ref[1].grad = None
    n1 = clip_grad_norm_(ours, max_norm)
    n2 = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert torch.equal(n1, n2)
    for p, q in zip(ours, ref, strict=True):
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad)


def test_hand_example():
    p, q = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    p.grad, q.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = clip_grad_norm_([p, q], 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert p.grad.tolist() == pytest.approx([0.6, 0.0], abs=1e-6)
    assert q.grad.tolist() == pytest.approx([0.8], abs=1e-6)
    assert torch.linalg.vector_norm(torch.cat([p.grad, q.grad])).item() == pytest.approx(1.0, abs=1e-6)


def test_below_threshold_leaves_grads_alone():
    p = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([0.1, 0.2, 0.2])
    norm = clip_grad_norm_([p], 1.0)
    assert norm.item() == pytest.approx(0.3)
    assert torch.equal(p.grad, torch.tensor([0.1, 0.2, 0.2]))


def test_single_tensor_generator_and_no_grads():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_grad_norm_(p, 100.0).item() == pytest.approx(5.0)
    assert clip_grad_norm_(iter([p]), 100.0).item() == pytest.approx(5.0)
    assert clip_grad_norm_([nn.Parameter(torch.zeros(2))], 1.0).item() == 0.0


def test_non_finite_norm_is_reported():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([float("inf"), 1.0])
    assert not torch.isfinite(clip_grad_norm_([p], 1.0))
