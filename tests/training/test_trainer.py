"""The training loop on CPU: outputs, exact resume, signals, non-finite loss, compile fallback, resume policy."""

import os
import signal

import numpy as np
import pytest
import torch

from cs336_lm.config import load_config
from cs336_lm.errors import CheckpointError, ConfigError, LMError
from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training import NonFiniteLossError, Trainer, train, trainer
from cs336_lm.training.metrics import read_metrics


def final_state(out_dir):
    return read_checkpoint(RunDir(out_dir).latest())


def assert_bitwise_equal(a, b, where="state"):
    """Nested dicts/lists of tensors and numbers are identical, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def interrupt_at(monkeypatch, step: int) -> None:
    """Make the loop receive SIGTERM right after optimizer step ``step`` (as a user's kill would arrive)."""
    original = Trainer._after_step

    def after_step(self, grad_norm):
        original(self, grad_norm)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_after_step", after_step)


def test_run_directory_outputs(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", {"train.keep_last": 1})
    result = train(cfg)
    out = tmp_path / "run"
    assert result.step == 6 and result.stopped_by is None and result.val_loss is not None
    saved = load_config(out / "config.yaml")
    assert saved == cfg
    model_section = {k: v for k, v in vars(saved.model).items() if k != "preset"}
    model = TransformerLM(**model_section)  # every architecture field is explicit
    assert Tokenizer.from_directory(out / "tokenizer").vocab_size == 257
    assert [p.name for p in RunDir(out).checkpoints()] == ["step_00000006.pt"]  # keep_last=1
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000006.pt"
    state = torch.load(RunDir(out).latest(), weights_only=True)
    model.load_state_dict(state["model"])
    assert state["iteration"] == 6 and state["config"]["train"]["max_steps"] == 6
    records = read_metrics(out / "metrics.jsonl")
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in eval_records] == [3, 6]
    expected = {"step", "tokens", "lr", "loss", "grad_norm", "tokens_per_s", "memory_gb", "wall_time_s"}
    assert expected <= train_records[0].keys()
    assert train_records[-1]["tokens"] == 6 * 4 * 16
    assert eval_records[-1]["val_ppl"] == pytest.approx(np.exp(eval_records[-1]["val_loss"]))
    lrs = [r["lr"] for r in train_records[:3]]
    assert lrs == pytest.approx([0.0, cfg.optim.lr / 2, cfg.optim.lr], rel=1e-12)  # 2 warmup steps


def test_loss_goes_down(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", {"train.max_steps": 20, "train.eval_every": 20, "optim.lr": 1e-2})
    train(cfg)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert losses[0] == pytest.approx(np.log(257), abs=0.5)  # starts near uniform over the vocabulary


@pytest.mark.parametrize(
    ("extra", "overflows"),
    [
        ({"train.dtype": "fp32"}, set()),
        ({"train.dtype": "bf16", "train.grad_accum_steps": 2}, set()),
        ({"train.dtype": "fp16", "train.grad_accum_steps": 2}, {1, 4}),  # skipped steps before and after the stop
        ({"train.dtype": "fp32", "train.log_every": 4}, set()),  # the stop falls inside a log window
        ({"train.dtype": "fp32", "optim.name": "muon"}, set()),
        ({"train.dtype": "bf16", "train.grad_accum_steps": 2, "optim.name": "muon", "optim.schedule": "wsd"}, set()),
        ({"train.dtype": "fp16", "optim.name": "muon", "optim.muon_lr": 0.02}, {1, 4}),
    ],
    ids=["fp32", "bf16-accum2", "fp16-accum2-overflows", "log-window", "muon", "muon-wsd-bf16-accum2", "muon-fp16"],
)
def test_interrupted_and_resumed_run_is_bitwise_identical(
    tmp_path, tiny_config, monkeypatch, force_overflow, extra, overflows
):
    """N steps straight == N/2 steps, SIGTERM, resume, N/2 more: same parameters, optimizer and loss-scaler state,
    and logs, record by record (on one thread: tiny_config sets train.threads=1; with ``log_every=4`` the record at
    step 4 averages steps 1-4 though the run stopped after 2). AdamW, and Muon with its momentum buffers."""
    force_overflow(overflows)
    train(tiny_config(tmp_path / "straight", extra))
    interrupt_at(monkeypatch, 2)  # not a checkpoint step: the signal handler saves one itself
    first = train(tiny_config(tmp_path / "resumed", extra))
    assert first.stopped_by == "SIGTERM" and first.step == 2
    monkeypatch.undo()
    force_overflow(overflows)
    second = train(tiny_config(tmp_path / "resumed", extra))
    assert second.step == 6 and second.stopped_by is None
    straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert_bitwise_equal(straight["model"], resumed["model"], "model")
    assert_bitwise_equal(straight["optimizer"], resumed["optimizer"], "optimizer")
    assert_bitwise_equal(straight["rng"], resumed["rng"], "rng")
    assert straight["loss_scaler"] == resumed["loss_scaler"]
    if overflows:
        assert resumed["loss_scaler"]["skipped_steps"] == 2 and resumed["loss_scaler"]["scale"] == 2.0**14
    assert_same_records(tmp_path / "straight", tmp_path / "resumed")


def assert_same_records(run_a, run_b):
    """The two runs' metrics.jsonl hold the same records, equal in everything but the timings."""
    logs = [read_metrics(run / "metrics.jsonl") for run in (run_a, run_b)]
    keys = ("step", "tokens", "lr", "loss", "grad_norm", "val_loss", "val_ppl", "loss_scale", "skipped_steps")
    assert [{k: r.get(k) for k in keys} for r in logs[0]] == [{k: r.get(k) for k in keys} for r in logs[1]]
    assert len(logs[0]) > 2


def test_resume_passes_over_a_damaged_checkpoint_and_ends_as_an_uninterrupted_run(
    tmp_path, tiny_config, flip_tensor_bytes
):
    train(tiny_config(tmp_path / "straight"))
    train(tiny_config(tmp_path / "run", {"train.max_steps": 5}))  # checkpoints at steps 3 and 5
    damaged = RunDir(tmp_path / "run").checkpoint_path(5)
    flip_tensor_bytes(damaged)
    good = RunDir(tmp_path / "run").checkpoint_path(3)
    with pytest.warns(UserWarning, match=rf"{damaged} is damaged: .*; resuming from {good}, the newest checkpoint"):
        result = train(tiny_config(tmp_path / "run"))
    assert result.step == 6
    assert_bitwise_equal(final_state(tmp_path / "straight")["model"], final_state(tmp_path / "run")["model"])
    assert_same_records(tmp_path / "straight", tmp_path / "run")


def test_a_resume_that_fails_leaves_no_run_directory_behind(tmp_path, tiny_config, flip_tensor_bytes):
    train(tiny_config(tmp_path / "a", {"train.max_steps": 3}))
    damaged = RunDir(tmp_path / "a").checkpoint_path(3)
    flip_tensor_bytes(damaged)
    for resume in (tmp_path / "missing.pt", damaged, tmp_path / "a"):
        with pytest.raises(LMError):
            Trainer(tiny_config(tmp_path / "new" / "run", {"train.resume": str(resume)}))
        assert not (tmp_path / "new").exists(), resume
    (tmp_path / "kept").mkdir()
    with pytest.raises(LMError):
        Trainer(tiny_config(tmp_path / "kept" / "run", {"train.resume": str(damaged)}))
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())  # only what setup made is gone


def test_metrics_damaged_by_hand_are_dropped_with_a_warning_on_resume(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.max_steps": 3}))
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("ab") as f:
        f.write(b'\xff\xfe not text\n[1, 2]\n{"step": "three"}\n')
    with pytest.warns(UserWarning, match=r"line 5 is not UTF-8 text; line 6 is a JSON list, not an object; a reco"):
        train(tiny_config(tmp_path / "run", {"train.max_steps": 4}))
    assert [r["step"] for r in read_metrics(metrics) if "loss" in r] == [1, 2, 3, 4]


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.max_steps": 3}))
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as f:  # as if the process died after logging step 4 but before saving it
        f.write('{"step": 4, "loss": 123.0}\n')
    train(tiny_config(tmp_path / "run", {"train.max_steps": 5}))
    steps = [r["step"] for r in read_metrics(metrics) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    assert all(r.get("loss") != 123.0 for r in read_metrics(metrics))


def test_resume_none_refuses_an_existing_run(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.max_steps": 3}))
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a run.*train\.resume=auto"):
        Trainer(tiny_config(tmp_path / "run", {"train.resume": "none"}))
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before


def test_resume_from_an_explicit_checkpoint_path(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "a", {"train.max_steps": 6}))
    source = tmp_path / "a" / "checkpoints" / "step_00000003.pt"
    assert source.is_file()
    result = train(tiny_config(tmp_path / "b", {"train.max_steps": 6, "train.resume": str(source)}))
    assert result.step == 6
    assert_bitwise_equal(final_state(tmp_path / "a")["model"], final_state(tmp_path / "b")["model"])
    with pytest.raises(ConfigError, match="no such checkpoint"):
        Trainer(tiny_config(tmp_path / "c", {"train.resume": str(tmp_path / "missing.pt")}))


def test_resume_with_another_architecture_is_refused(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.max_steps": 3}))
    with pytest.raises(ConfigError, match=r"model\.d_model=32 \(config: 64\)"):
        Trainer(tiny_config(tmp_path / "run", {"model.d_model": 64}))


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {"train.max_steps": 3}))
    path = RunDir(tmp_path / "run").latest()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Trainer(tiny_config(tmp_path / "run"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config, monkeypatch):
    calls = {"n": 0}
    real_cross_entropy = trainer.cross_entropy

    def poisoned(logits, targets):  # finite for 4 steps, then NaN
        calls["n"] += 1
        loss = real_cross_entropy(logits, targets)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(trainer, "cross_entropy", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 5.*step_00000003\.pt"):
        train(tiny_config(tmp_path / "run", {"train.eval_every": 0}))
    assert [p.name for p in RunDir(tmp_path / "run").checkpoints()] == ["step_00000003.pt"]
    assert final_state(tmp_path / "run")["iteration"] == 3


def test_compile_failure_falls_back_to_eager_with_one_warning(tmp_path, tiny_config, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda model: Broken())
    with pytest.warns(UserWarning, match="torch.compile failed") as caught:
        train(tiny_config(tmp_path / "compiled", {"train.compile": "true"}))
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    assert not any("compile_s" in r for r in read_metrics(tmp_path / "compiled" / "metrics.jsonl"))
    monkeypatch.undo()
    train(tiny_config(tmp_path / "eager", {"train.compile": "false"}))
    assert_bitwise_equal(final_state(tmp_path / "compiled")["model"], final_state(tmp_path / "eager")["model"])


def test_compile_time_is_logged_apart(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model: model)  # a compile that "works" instantly
    train(tiny_config(tmp_path / "run", {"train.compile": "true", "train.max_steps": 2}))
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert "compile_s" in records[0] and "compile_s" not in records[1]
    assert "tokens_per_s" not in records[0]  # the compile step is left out of the throughput


def test_batch_generators_differ_per_rank_and_repeat_per_seed():
    a, b, c = trainer.batch_generator(0, 0), trainer.batch_generator(0, 1), trainer.batch_generator(0, 0)
    draws = [g.integers(0, 1 << 30, size=8) for g in (a, b, c)]
    assert not np.array_equal(draws[0], draws[1])
    assert np.array_equal(draws[0], draws[2])


def test_learning_rate_schedule_defaults_to_the_whole_run(tiny_config, tmp_path):
    cfg = tiny_config(tmp_path / "run", {"train.max_steps": 100, "optim.warmup_iters": 10})
    assert trainer.lr_at(0, cfg) == 0.0
    assert trainer.lr_at(10, cfg) == pytest.approx(cfg.optim.lr, rel=1e-12)
    assert trainer.lr_at(100, cfg) == pytest.approx(cfg.optim.min_lr)
    assert trainer.lr_at(55, cfg) == pytest.approx((cfg.optim.lr + cfg.optim.min_lr) / 2)


def test_wsd_schedule_decays_over_the_last_fraction_of_the_run(tiny_config, tmp_path):
    extra = {"train.max_steps": 100, "optim.warmup_iters": 10, "optim.schedule": "wsd", "optim.decay_frac": 0.25}
    cfg = tiny_config(tmp_path / "run", extra)
    lr, min_lr = cfg.optim.lr, cfg.optim.min_lr
    assert [trainer.lr_at(step, cfg) for step in (0, 5, 10, 50, 75)] == [0.0, lr / 2, lr, lr, lr]
    assert trainer.lr_at(90, cfg) == pytest.approx(lr - 0.6 * (lr - min_lr))  # 15 of 25 decay steps
    assert trainer.lr_at(100, cfg) == pytest.approx(min_lr)
    cfg = tiny_config(tmp_path / "run", {**extra, "optim.decay_frac": 1.0})  # all decay: never into the warmup
    assert trainer.lr_at(10, cfg) == lr and trainer.lr_at(55, cfg) == pytest.approx((lr + min_lr) / 2)
    cfg = tiny_config(tmp_path / "run", {**extra, "optim.decay_shape": "1-sqrt"})
    assert trainer.lr_at(76, cfg) == pytest.approx(min_lr + 0.8 * (lr - min_lr))  # 1 − √(1/25)


def test_linear_schedule_is_a_straight_line_from_the_end_of_warmup(tiny_config, tmp_path):
    """``linear`` (Muon's ``auto``) written out by hand: 0 → lr over the warmup, then lr → min_lr by max_steps."""
    cfg = tiny_config(tmp_path / "run", {"train.max_steps": 100, "optim.warmup_iters": 20, "optim.schedule": "linear"})
    lr, min_lr = cfg.optim.lr, cfg.optim.min_lr
    for step in (0, 7, 20, 21, 40, 60, 99, 100, 130):
        expected = step / 20 * lr if step < 20 else lr - min(1, (step - 20) / 80) * (lr - min_lr)
        assert trainer.lr_at(step, cfg) == pytest.approx(expected, rel=1e-12, abs=1e-15), step


def test_wandb_run_id_is_stored_and_reused_on_resume(tmp_path, tiny_config, monkeypatch):
    """With a stand-in wandb module: records are mirrored, the run id goes into checkpoints and back to init."""
    import sys
    import types

    calls = []

    class FakeRun:
        def __init__(self, run_id):
            self.id, self.logged = run_id, []

        def log(self, data, step):
            self.logged.append((step, data))

        def finish(self):
            pass

    def init(**kwargs):
        calls.append(kwargs)
        run = FakeRun(kwargs["id"] or "run-abc")
        calls[-1]["run"] = run
        return run

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    extra = {"train.wandb.enabled": "true", "train.wandb.project": "demo"}
    train(tiny_config(tmp_path / "run", {**extra, "train.max_steps": 3}))
    assert calls[0]["id"] is None and calls[0]["project"] == "demo" and calls[0]["name"] == "run"
    assert [step for step, data in calls[0]["run"].logged if "loss" in data] == [1, 2, 3]
    assert final_state(tmp_path / "run")["wandb_run_id"] == "run-abc"
    train(tiny_config(tmp_path / "run", {**extra, "train.max_steps": 4}))
    assert calls[1]["id"] == "run-abc" and calls[1]["resume"] == "allow"
