"""fp16 autocast with dynamic loss scaling in the loop, on the CPU: a forced overflow skips the step (weights and
optimizer state unchanged, the scale halved, the step counted) and training goes on; clipping sees unscaled
gradients; skipped steps are logged and checkpointed."""

import copy
import math

import pytest
import torch

from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.training import Trainer, train
from cs336_lm.training.metrics import read_metrics

FP16 = {"train.dtype": "fp16", "train.grad_accum_steps": 2}


def state_of(job) -> tuple[dict, dict]:
    """Deep copies of the model's and the optimizer's state."""
    return copy.deepcopy(job.model.state_dict()), copy.deepcopy(job.optimizer.state_dict())


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def test_a_forced_overflow_skips_the_step_and_training_goes_on(tmp_path, tiny_config, force_overflow):
    runner = Trainer(tiny_config(tmp_path / "run", FP16))
    job = runner.job
    assert job.dtype == torch.float16 and job.scaler.enabled and job.scaler.scale_value == 2.0**16
    runner.train_step()
    before = state_of(job)
    force_overflow({2})
    loss, grad_norm = runner.train_step()
    assert math.isfinite(loss) and grad_norm.item() == math.inf
    assert runner.step == 2  # the step counts: its batches were consumed, the schedule moves on
    assert job.scaler.scale_value == 2.0**15 and job.scaler.skipped_steps == 1
    weights, optimizer = state_of(job)
    assert_same(weights, before[0])
    assert_same(optimizer["state"], before[1]["state"])  # moments and AdamW's own step count untouched
    assert all(p.grad is None for p in job.model.parameters())
    runner.train_step()
    weights, optimizer = state_of(job)
    assert not torch.equal(weights["lm_head.weight"], before[0]["lm_head.weight"])
    assert {s["step"] for s in optimizer["state"].values()} == {2}  # two updates in three steps
    assert job.scaler.scale_value == 2.0**15 and job.scaler.skipped_steps == 1


def test_clipping_and_the_logged_norm_see_unscaled_gradients(tmp_path, tiny_config):
    """fp16's gradient norm is the fp32 one (to fp16 rounding), not 65536 times it."""
    norms = {}
    for dtype in ("fp32", "fp16"):
        runner = Trainer(tiny_config(tmp_path / dtype, {"train.dtype": dtype}))
        norms[dtype] = runner.train_step()[1].item()
    assert norms["fp32"] > 1.0  # above optim.grad_clip: clipping acts
    assert norms["fp16"] == pytest.approx(norms["fp32"], rel=1e-2)


def test_skipped_steps_are_logged_and_checkpointed(tmp_path, tiny_config, force_overflow, capsys):
    force_overflow({2, 3})
    result = train(tiny_config(tmp_path / "run", FP16))
    assert result.step == 6 and math.isfinite(result.train_loss)
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["skipped_steps"] for r in records] == [0, 1, 2, 2, 2, 2]
    assert [r["loss_scale"] for r in records] == [2.0**16, 2.0**15, 2.0**14, 2.0**14, 2.0**14, 2.0**14]
    assert [("grad_norm" in r) for r in records] == [True, False, False, True, True, True]
    scaler = read_checkpoint(RunDir(tmp_path / "run").latest())["loss_scaler"]
    assert (scaler["scale"], scaler["skipped_steps"], scaler["good_steps"]) == (2.0**14, 2, 3)
    out = capsys.readouterr().out
    assert "fp16 autocast + dynamic loss scaling (scale 65536" in out
    assert "scale 16384 | skipped 2" in out


def test_bf16_and_fp32_checkpoints_carry_no_scaler(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.dtype": "fp32", "train.max_steps": 2}))
    assert read_checkpoint(RunDir(tmp_path / "run").latest())["loss_scaler"] is None
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert not any("loss_scale" in r or "skipped_steps" in r for r in records)
