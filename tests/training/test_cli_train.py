"""``lm-train`` as users meet it: --help, --print-config, bad input (one line, exit 2, nothing overwritten), SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from cs336_lm.cli.train import main
from cs336_lm.data import write_tokens
from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.training.metrics import read_metrics

from .conftest import DEBUG_CONFIG, REPO, tiny_overrides


def snapshot(directory):
    """Every file under ``directory`` with its bytes: to prove that a failed run changed nothing."""
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def run_cli(capsys, args):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_explains_overrides(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "key=value" in text and "optim.lr=1e-3" in text and "train.resume" in text


def test_print_config_resolves_presets_and_overrides_and_writes_nothing(tmp_path, capsys, run_inputs):
    args = ["--config", str(DEBUG_CONFIG), "--print-config", *tiny_overrides(run_inputs, tmp_path / "run")]
    rc, out, _ = run_cli(capsys, [*args, "optim.lr=0.01"])
    assert rc == 0
    printed = yaml.safe_load(out)
    assert printed["optim"]["lr"] == 0.01
    assert printed["model"]["d_model"] == 32 and printed["model"]["rope_theta"] == 10000.0
    assert not (tmp_path / "run").exists()


@pytest.fixture
def existing_run(tmp_path, capsys, run_inputs):
    """A finished 3-step run in tmp_path/run, whose files the failing commands below must leave alone."""
    out_dir = tmp_path / "run"
    rc = main(["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, out_dir, {"train.max_steps": 3})])
    capsys.readouterr()
    assert rc == 0
    return out_dir


def bad_inputs(tmp_path, run_inputs):
    """(override dict, expected message fragment) for each kind of bad input."""
    ids = np.arange(200) % 257
    bad_ids = write_tokens(tmp_path / "bad_ids.npy", np.append(ids, 600), 1000)
    short = write_tokens(tmp_path / "short.npy", ids[:10], 257)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    return [
        ({"data.train_path": tmp_path / "missing.npy"}, "data.train_path"),
        ({"data.val_path": tmp_path / "missing.npy"}, "data.val_path"),
        ({"data.tokenizer_dir": tmp_path / "no_tokenizer"}, "data.tokenizer_dir"),
        ({"data.train_path": bad_ids}, "token id 600"),
        ({"data.val_path": short}, "fewer than one training window"),
        ({"model.vocab_size": 300}, "model.vocab_size=257"),
        ({"train.out_dir": a_file / "run"}, "not a writable directory"),
        ({"model.d_model": 33}, "divisible"),
        ({"model.d_model": 30}, "must be even"),
        ({"model.context_length": 0}, "model.context_length must be positive"),
        ({"optim.lrr": 1}, "did you mean 'optim.lr'"),
        ({"train.device": "tpu"}, "train.device"),
        ({"optim.lr": "inf"}, "optim.lr must be a finite number"),
        ({"model.rope_theta": "inf"}, "model.rope_theta must be a finite number"),
        ({"train.seed": 2**32}, "train.seed must be below 2**32"),
        ({"train.out_dir": tmp_path / "r\udcffun"}, "is not UTF-8 text"),  # bytes from argv that are not UTF-8
        ({"train.resume": a_file}, "a_file is not a readable checkpoint"),
    ]


def test_bad_input_is_one_line_exit_2_and_overwrites_nothing(tmp_path, capsys, run_inputs, existing_run):
    before = snapshot(existing_run)
    for extra, fragment in bad_inputs(tmp_path, run_inputs):
        rc, _, err = run_cli(capsys, ["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, existing_run, extra)])
        assert rc == 2, extra
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (extra, err)
        assert snapshot(existing_run) == before, extra


def test_malformed_config_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  max_steps: [1\n")
    rc, _, err = run_cli(capsys, ["--config", str(path)])
    assert rc == 2 and "broken.yaml, line" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, ["--config", str(tmp_path / "absent.yaml")])
    assert rc == 2 and "not found" in err


def test_sigterm_saves_a_checkpoint_and_exits_0(tmp_path, run_inputs):
    out_dir = tmp_path / "run"
    extra = {"train.max_steps": 100000, "train.ckpt_every": 0, "train.eval_every": 0}
    cmd = [sys.executable, "-m", "cs336_lm.cli.train", "--config", str(DEBUG_CONFIG)]
    cmd += tiny_overrides(run_inputs, out_dir, extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in conftest: one thread is fastest for a tiny model
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not read_metrics(out_dir / "metrics.jsonl") and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in out
    state = read_checkpoint(RunDir(out_dir).latest())
    logged = [r["step"] for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert state["iteration"] >= 1 and state["iteration"] == logged[-1]  # the step in flight was finished


def test_console_script_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'lm-train = "cs336_lm.cli.train:main"' in text
    assert os.access(DEBUG_CONFIG, os.R_OK)


def test_non_finite_loss_exits_1_with_one_line(tmp_path, capsys, run_inputs, monkeypatch):
    from cs336_lm.training import trainer

    monkeypatch.setattr(trainer, "cross_entropy", lambda logits, targets: logits.float().sum() * float("inf"))
    rc, _, err = run_cli(capsys, ["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, tmp_path / "run")])
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the training loss became") and "at step 1" in lines[0]
    assert RunDir(tmp_path / "run").latest() is None


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path, capsys, run_inputs, monkeypatch, full_disk
):
    real_save, saved = RunDir.save_checkpoint, []

    def save(self, model, optimizer, step, *args, **kwargs):
        saved.append(step)
        if len(saved) == 2:  # the disk fills up during the checkpoint of step 6, partway through
            full_disk(free=50_000)
        return real_save(self, model, optimizer, step, *args, **kwargs)

    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    out_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, ["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, out_dir)])
    run = RunDir(out_dir)
    assert rc == 2 and saved == [3, 6]
    assert err.splitlines() == [
        f"error: cannot write {run.checkpoint_path(6)}: No space left on device; training stopped after step 6, the "
        f"last checkpoint is {run.checkpoint_path(3)}: free some space and run the same command again to resume"
    ]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["latest", "step_00000003.pt"]  # no temporary
    assert read_checkpoint(run.latest())["iteration"] == 3  # and it verifies


def test_a_full_disk_while_logging_is_one_line(tmp_path, capsys, run_inputs, monkeypatch, full_disk):
    from cs336_lm.training import metrics

    real_init = metrics.MetricsLog.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._file = full_disk(free=100).wrap(self._file)  # room for about one record

    monkeypatch.setattr(metrics.MetricsLog, "__init__", init)
    out_dir = tmp_path / "run"
    rc, _, err = run_cli(capsys, ["--config", str(DEBUG_CONFIG), *tiny_overrides(run_inputs, out_dir)])
    assert rc == 2
    assert err.splitlines() == [
        f"error: cannot write {out_dir / 'metrics.jsonl'}: No space left on device; training stopped after step 1, "
        "the last checkpoint is none: free some space and run the same command again to resume"
    ]
