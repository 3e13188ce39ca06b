"""metrics.jsonl handling (fresh, resumed, torn lines), the stdout line and the small helpers."""

import json
import math

import pytest
import torch

from cs336_lm.training.metrics import (
    MetricsLog,
    StepWindow,
    WandbLogger,
    format_line,
    memory_gb,
    perplexity,
    read_metrics,
)


def test_fresh_log_truncates_and_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 99}\n')
    log = MetricsLog(path)
    log.write({"step": 1, "loss": 2.5})
    log.write({"step": 2, "loss": 2.0})
    assert read_metrics(path) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    log.close()


def test_resumed_log_drops_records_past_the_resume_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (5, 10, 15, 20)]
    path.write_text("\n".join(lines) + '\n{"step": 25, "lo')  # a torn line from a hard kill
    log = MetricsLog(path, resume_step=10)
    log.write({"step": 15, "loss": 0.5})
    log.close()
    assert [r["step"] for r in read_metrics(path)] == [5, 10, 15]
    assert read_metrics(path)[-1]["loss"] == 0.5


def test_read_metrics_of_a_missing_file(tmp_path):
    assert read_metrics(tmp_path / "none.jsonl") == []


def test_format_line_shows_what_is_there():
    line = format_line(
        {"step": 7, "loss": 3.14159, "lr": 3e-4, "grad_norm": 0.5, "tokens_per_s": 51234.0, "memory_gb": 1.5}, 100
    )
    assert line.startswith("step   7/100 | loss 3.1416 | lr 3.00e-04 | grad 0.500 | 51.2k tok/s")
    assert "mfu" not in line
    assert "val_ppl 20.09" in format_line({"step": 100, "val_loss": 3.0, "val_ppl": math.exp(3.0)}, 100)
    assert "mfu 42.0%" in format_line({"step": 1, "mfu": 0.42}, 10)
    fp16 = format_line({"step": 9, "loss": 2.0, "loss_scale": 32768.0, "skipped_steps": 3}, 10)
    assert "scale 32768 | skipped 3" in fp16
    assert "skipped" not in format_line({"step": 9, "loss_scale": 65536.0, "skipped_steps": 0}, 10)


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(20.0)) == pytest.approx(20.0)
    assert perplexity(1e6) == math.inf


def test_memory_is_reported_in_gb():
    big = torch.ones(50_000_000, dtype=torch.uint8)  # 50 MB touched, so the resident peak is at least that
    big.add_(1)
    assert memory_gb(torch.device("cpu")) >= 0.05


def test_wandb_disabled_or_missing_is_silent_or_warns(monkeypatch):
    WandbLogger(False, project="p", entity=None, name="n", config={}).log({"step": 1, "loss": 1.0})
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.warns(UserWarning, match="wandb is not installed"):
        logger = WandbLogger(True, project="p", entity=None, name="n", config={})
    logger.log({"step": 1})
    logger.finish()
    assert logger.run is None


def test_step_window_leaves_untimed_steps_out_of_throughput():
    window = StepWindow()
    window.add(4.0, 30.0, timed=False)  # e.g. the compile step
    window.add(2.0, 1.0)
    window.add(3.0, 2.0)
    assert window.take() == (3, 9.0, 2, 3.0)
    assert window.take() == (0, 0.0, 0, 0.0)


def test_step_window_state_keeps_the_losses_and_not_the_times():
    window = StepWindow()
    window.add(0.1, 5.0)
    window.add(0.2, 5.0)
    state = window.state_dict()
    assert state == {"steps": 2, "loss_sum": 0.1 + 0.2, "first_loss": 0.1}  # first_loss: divergence is measured from it
    resumed = StepWindow.from_state_dict(state)
    assert resumed.first_loss == 0.1
    resumed.add(0.3, 1.0)
    window.add(0.3, 1.0)
    steps, loss_sum, timed, seconds = resumed.take()
    assert (steps, loss_sum) == window.take()[:2] and loss_sum == 0.1 + 0.2 + 0.3  # the same sum, bit for bit
    assert (timed, seconds) == (1, 1.0)  # only the steps timed after the resume
    assert StepWindow.from_state_dict(None).take() == (0, 0.0, 0, 0.0)  # a checkpoint from before windows were kept
