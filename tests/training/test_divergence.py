"""The divergence rule: a logged loss more than ``train.diverge_margin`` above the first step's ends the run as
diverged (``LossRoseError``, lm-train exit 1), a healthy run never trips it, the margin 0 turns it off, and a resumed
run measures from the first step of the whole run (kept in the checkpoint)."""

import pytest

from cs336_lm.cli.train import main
from cs336_lm.errors import DivergenceError, LossRoseError, NonFiniteLossError
from cs336_lm.training import train
from cs336_lm.training.divergence import loss_rose
from cs336_lm.training.metrics import StepWindow, read_metrics

from .conftest import DEBUG_CONFIG, tiny_overrides


@pytest.mark.parametrize(
    ("loss", "first", "margin", "expected"),
    [(9.3, 6.2, 3.0, True), (9.1, 6.2, 3.0, False), (9.2, 6.2, 3.0, False), (50.0, 6.2, 0.0, False),
     (50.0, None, 3.0, False), (float("inf"), 6.2, 3.0, True), (50.0, float("nan"), 3.0, False)],
)  # fmt: skip
def test_the_rule(loss, first, margin, expected):
    assert loss_rose(loss, first, margin) is expected


def test_both_divergences_share_one_base():
    assert issubclass(LossRoseError, DivergenceError) and issubclass(NonFiniteLossError, DivergenceError)


def test_a_rate_far_too_high_stops_the_run_as_diverged(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", {"optim.lr": 1000.0, "train.max_steps": 30})
    with pytest.raises(LossRoseError, match=r"rose to .* at step \d+, more than train.diverge_margin=3"):
        train(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert losses[-1] > losses[0] + 3 and all(loss <= losses[0] + 3 for loss in losses[:-1])


def test_a_healthy_run_never_trips_it(tmp_path, tiny_config):
    result = train(tiny_config(tmp_path / "run", {"train.max_steps": 30, "train.diverge_margin": 0.5}))
    assert result.step == 30  # even a margin of half a nat: the loss wobbles near its start, then falls


def test_lm_train_exits_1_with_one_line(tmp_path, run_inputs, capsys):
    overrides = tiny_overrides(run_inputs, tmp_path / "run", {"optim.lr": 1000.0, "train.max_steps": 30})
    assert main(["--config", str(DEBUG_CONFIG), *overrides]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the training loss rose to") and err.count("\n") == 1


def test_the_first_loss_survives_a_checkpoint():
    window = StepWindow()
    window.add(6.0, 0.1)
    window.add(5.0, 0.1)
    window.take()
    assert StepWindow.from_state_dict(window.state_dict()).first_loss == 6.0
    assert StepWindow.from_state_dict({"steps": 0, "loss_sum": 0.0}).first_loss is None  # an older checkpoint
