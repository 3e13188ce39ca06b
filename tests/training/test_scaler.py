"""The loss scaler against ``torch.amp.GradScaler`` (its reference semantics), exact unscaling, and its state."""

import math

import pytest
import torch

from cs336_lm.training.scaler import LossScaler

OK, INF, NAN = 1.0, math.inf, math.nan


def test_scale_and_skips_follow_torch_grad_scaler():
    """The same losses through GradScaler and through ours: equal scales, growth trackers, skips and weights."""
    pattern = [OK, OK, OK, INF, OK, NAN, OK, OK, OK, OK, OK, OK, INF, INF, OK, OK, OK]
    reference = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    ours = LossScaler(enabled=True, growth_interval=3)
    p_ref = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    p_ours = torch.nn.Parameter(p_ref.detach().clone())
    sgd_ref, sgd_ours = torch.optim.SGD([p_ref], lr=0.1), torch.optim.SGD([p_ours], lr=0.1)
    skipped = 0
    for poison in pattern:
        x = torch.tensor([poison, 3.0])  # inf or nan in x makes that gradient inf or nan
        reference.scale((p_ref * x).sum()).backward()
        reference.step(sgd_ref)
        reference.update()
        ours.scale((p_ours * x).sum()).backward()
        found = ours.unscale_([p_ours.grad])
        if ours.update(found.item() > 0):
            sgd_ours.step()
        skipped += poison != OK
        sgd_ref.zero_grad(), sgd_ours.zero_grad()
        assert ours.scale_value == reference.get_scale()
        assert ours.good_steps == reference._growth_tracker.item()
        assert torch.equal(p_ours, p_ref)
    assert ours.skipped_steps == skipped == 4
    assert ours.scale_value == 2.0**16  # 4 halvings, 4 doublings


def test_a_skipped_step_reports_overflow_and_an_applied_one_does_not():
    scaler = LossScaler(enabled=True, init_scale=8.0, growth_interval=2)
    grads = [torch.tensor([8.0, 16.0]), torch.tensor([-24.0])]
    assert scaler.unscale_(grads).item() == 0.0
    assert [g.tolist() for g in grads] == [[1.0, 2.0], [-3.0]]  # divided by the scale, exactly
    assert scaler.update(False) is True and scaler.scale_value == 8.0
    assert scaler.update(False) is True and scaler.scale_value == 16.0  # growth_interval good steps
    assert scaler.unscale_([torch.tensor([1.0]), torch.tensor([math.inf])]).item() == 1.0
    assert scaler.update(True) is False and scaler.scale_value == 8.0 and scaler.skipped_steps == 1


def test_unscaled_gradients_equal_unscaled_training_bitwise():
    """S is a power of two: scaling the loss and unscaling the gradients changes no bit (fp32, no overflow)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    layer(x).square().mean().backward()
    plain = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    scaler = LossScaler(enabled=True)
    scaler.scale(layer(x).square().mean()).backward()
    grads = [p.grad for p in layer.parameters()]
    assert scaler.unscale_(grads).item() == 0.0
    assert all(torch.equal(a, b) for a, b in zip(grads, plain, strict=True))


def test_disabled_scaler_is_the_identity():
    scaler = LossScaler(enabled=False)
    loss, grads = torch.tensor(2.5), [torch.tensor([math.inf])]
    assert scaler.scale(loss) is loss
    assert scaler.unscale_(grads).item() == 0.0 and grads[0].item() == math.inf  # untouched, never skips
    assert scaler.update(True) is True and scaler.skipped_steps == 0


def test_state_round_trips_and_growth_stops_short_of_overflow():
    scaler = LossScaler(enabled=True, init_scale=2.0**127, growth_interval=1)
    scaler.update(False)
    assert scaler.scale_value == 2.0**127  # 2^128 is past float32's range: kept
    scaler.update(True)
    restored = LossScaler(enabled=True)
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == scaler.state_dict()
    assert scaler.state_dict() == {
        "scale": 2.0**126,
        "good_steps": 0,
        "skipped_steps": 1,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 1,
    }


def test_bad_factors_are_refused():
    with pytest.raises(ValueError, match="backoff_factor"):
        LossScaler(enabled=True, backoff_factor=1.5)
