"""TensorBoard event files and wandb (offline) with the real packages: what they receive, and resume.

Skipped where the ``tensorboard`` / ``wandb`` extras are not installed (``make test`` installs both). wandb runs
with ``WANDB_MODE=offline``: nothing leaves the machine.
"""

import os
from pathlib import Path

import pytest

from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.training import train
from cs336_lm.training.metrics import TensorBoardLogger, read_metrics


def scalars(directory: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar tag, read back with TensorBoard's own reader (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def assert_same_series(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """The same steps, and the same values to float32's precision (TensorBoard stores float32)."""
    assert [step for step, _ in got] == [step for step, _ in expected]
    assert [value for _, value in got] == pytest.approx([value for _, value in expected], rel=1e-6)


def test_tensorboard_mirrors_metrics_and_a_resume_hides_what_a_killed_run_logged(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    extra = {"train.tensorboard": "true", "train.max_steps": 3}
    train(tiny_config(tmp_path / "run", extra))
    board = RunDir(tmp_path / "run").tensorboard_dir
    with SummaryWriter(str(board)) as writer:  # as if a killed run had logged step 4 after the step-3 checkpoint
        writer.add_scalar("train/loss", 123.0, global_step=4)
    train(tiny_config(tmp_path / "run", {**extra, "train.max_steps": 5}))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [step for step, _ in scalars(board, "train/loss")] == [1, 2, 3, 4, 5]
    assert_same_series(scalars(board, "train/loss"), losses)
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    assert_same_series(scalars(board, "eval/val_loss"), val)


def test_tensorboard_missing_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("TensorBoard logging requires TensorBoard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.warns(UserWarning, match="tensorboard package is not installed"):
        logger = TensorBoardLogger(True, tmp_path / "tb")
    logger.log({"step": 1, "loss": 2.0})
    logger.finish()
    assert not (tmp_path / "tb").exists()


def test_wandb_offline_writes_its_run_in_the_run_directory_and_resumes_the_same_run(tmp_path, tiny_config, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # anything written to the working directory would show up here
    extra = {"train.wandb.enabled": "true", "train.wandb.project": "cs336-test", "train.max_steps": 2}
    train(tiny_config(tmp_path / "run", extra))
    run_id = read_checkpoint(RunDir(tmp_path / "run").latest())["wandb_run_id"]
    assert run_id
    train(tiny_config(tmp_path / "run", {**extra, "train.max_steps": 4}))
    assert read_checkpoint(RunDir(tmp_path / "run").latest())["wandb_run_id"] == run_id
    offline = sorted(p.name for p in (tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(run_id in name for name in offline)  # one folder per segment, one run id
    assert sorted(os.listdir(tmp_path)) == ["inputs", "run"]
