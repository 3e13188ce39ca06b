"""AdamW against ``torch.optim.AdamW``: same trajectory on a toy regression, param groups, state round trip."""

import functools
import io

import pytest
import torch
from torch import nn

from cs336_lm.optim import AdamW, param_groups_for_weight_decay

# The toy tensors are far too small to split across threads.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Toy(nn.Module):
    """A tiny two-layer net with a 1-D gain, so both decay groups are exercised."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, 8) * 0.3)
        self.gain = nn.Parameter(torch.ones(16))
        self.w2 = nn.Parameter(torch.randn(1, 16) * 0.3)

    def forward(self, x):
        return (torch.tanh(x @ self.w1.T) * self.gain) @ self.w2.T


def _train(opt_cls, steps, seed=0, grouped=False, **kwargs):
    torch.manual_seed(seed)
    model = Toy().double()
    x = torch.randn(64, 8, dtype=torch.float64)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    params = param_groups_for_weight_decay(model, kwargs.pop("weight_decay")) if grouped else model.parameters()
    opt = opt_cls(params, **kwargs)
    for it in range(steps):
        for g in opt.param_groups:  # a changing lr, as the schedule does
            g["lr"] = kwargs["lr"] * (1 - it / (2 * steps))
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return model, opt


TOY_HYPER = {"lr": 3e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}


@functools.cache
def _torch_reference(grouped):
    return _train(torch.optim.AdamW, 1000, grouped=grouped, **TOY_HYPER)[0]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("grouped", [False, True])
def test_matches_torch_adamw_after_1000_steps(foreach, grouped):
    kw = dict(TOY_HYPER)
    ours, _ = _train(AdamW, 1000, grouped=grouped, foreach=foreach, **kw)
    ref = _torch_reference(grouped)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert (p - q).abs().max().item() < 1e-6, name
    # the trajectory actually moved, so the comparison is not vacuous
    start, _ = _train(AdamW, 0, grouped=grouped, foreach=foreach, **kw)
    assert (ours.w1 - start.w1).abs().max() > 1e-2


def test_float32_matches_torch_closely():
    torch.manual_seed(0)
    p1 = nn.Parameter(torch.randn(32, 32))
    p2 = nn.Parameter(p1.detach().clone())
    ours, ref = AdamW([p1], lr=1e-2, weight_decay=0.01), torch.optim.AdamW([p2], lr=1e-2, weight_decay=0.01)
    for _ in range(200):
        g = torch.randn(32, 32)
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6)


def test_first_step_by_hand():
    # step 1: m = (1-b1) g, v = (1-b2) g², m̂ = g, v̂ = g², update = lr·g/(|g| + eps) after decay θ(1 − lr·λ)
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    p.grad = torch.tensor([0.5, -4.0], dtype=torch.float64)
    AdamW([p], lr=0.1, weight_decay=0.5, eps=0.0).step()
    expected = torch.tensor([1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_parameters_without_grad_are_untouched():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    a.grad = torch.ones(3)
    opt = AdamW([a, b], lr=0.1)
    opt.step()
    assert torch.equal(b, torch.ones(3)) and b not in opt.state
    assert opt.state[a]["step"] == 1


def test_state_dict_round_trip_continues_identically():
    kw = {"lr": 1e-2, "weight_decay": 0.1}
    model, opt = _train(AdamW, 50, grouped=True, **kw)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    twin = Toy().double()
    twin.load_state_dict(saved["model"])
    twin_opt = AdamW(param_groups_for_weight_decay(twin, 0.1), lr=1e-2)
    twin_opt.load_state_dict(saved["opt"])
    assert twin_opt.param_groups[0]["name"] == "decay" and twin_opt.param_groups[1]["weight_decay"] == 0.0
    for m, o in ((model, opt), (twin, twin_opt)):
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.25)
        o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_mixed_step_counts_in_one_group():
    # a parameter that first gets a gradient late has its own step count (bias correction), as in torch
    ps = [nn.Parameter(torch.ones(4, dtype=torch.float64)) for _ in range(2)]
    qs = [nn.Parameter(torch.ones(4, dtype=torch.float64)) for _ in range(2)]
    ours, ref = AdamW(ps, lr=0.1), torch.optim.AdamW(qs, lr=0.1)
    for it in range(6):
        for group in (ps, qs):
            group[0].grad = torch.full((4,), 0.1 * (it + 1), dtype=torch.float64)
            group[1].grad = torch.full((4,), -0.3, dtype=torch.float64) if it >= 3 else None
        ours.step()
        ref.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_weight_decay_groups_split_matrices_from_gains():
    model = Toy()
    groups = param_groups_for_weight_decay(model, 0.1)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert {id(p) for p in groups[0]["params"]} == {id(model.w1), id(model.w2)}
    assert [id(p) for p in groups[1]["params"]] == [id(model.gain)]
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0


def test_weight_decay_groups_skip_frozen_and_empty():
    model = Toy()
    model.gain.requires_grad_(False)
    groups = param_groups_for_weight_decay(model, 0.1)
    assert [g["name"] for g in groups] == ["decay"]


@pytest.mark.parametrize(
    "kwargs", [{"lr": -1.0}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)}, {"eps": -1.0}, {"weight_decay": -0.1}]
)
def test_rejects_invalid_hyper_parameters(kwargs):
    with pytest.raises(ValueError):
        AdamW([nn.Parameter(torch.ones(1))], **kwargs)
