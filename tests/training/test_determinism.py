"""``train.deterministic: true`` on two CPU threads: fresh runs and a stopped-and-resumed run are bitwise equal.

At this size (512 tokens of 128 dims per batch) the backward of the embedding lookup adds rows from two threads in
whatever order they arrive: two plain 2-thread runs differed by ~2e-7 in every trial on the development machine
(docs/training.md), with deterministic algorithms by nothing.
"""

import os
import signal

import torch

from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.training import Trainer, train
from cs336_lm.training.metrics import read_metrics

SIZE = {
    "model.context_length": 64,
    "model.d_model": 128,
    "model.num_heads": 4,
    "model.d_ff": 256,
    "train.batch_size": 8,
    "train.threads": 2,
    "train.deterministic": "true",
    "train.dtype": "fp32",
    "train.eval_every": 0,
}


def final(run) -> dict:
    return read_checkpoint(RunDir(run).latest())


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_runs_and_resumes_are_bitwise_equal_on_two_threads(tmp_path, tiny_config, monkeypatch):
    flags = []
    original_step, original_after = Trainer.train_step, Trainer._after_step

    def train_step(self):
        flags.append((torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()))
        return original_step(self)

    def after_step(self, grad_norm):  # the resumed run's first segment is stopped by SIGTERM after step 3
        original_after(self, grad_norm)
        if self.step == 3 and self.cfg.train.out_dir.endswith("resumed") and self.job.resumed_from is None:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    monkeypatch.setattr(Trainer, "_after_step", after_step)
    for name in ("first", "second", "resumed"):
        train(tiny_config(tmp_path / name, SIZE))
    assert train(tiny_config(tmp_path / "resumed", SIZE)).step == 6
    assert set(flags) == {(True, 2)} and not torch.are_deterministic_algorithms_enabled()  # put back after
    first, second, resumed = (final(tmp_path / name) for name in ("first", "second", "resumed"))
    assert same(first["model"], second["model"]) and same(first["model"], resumed["model"])
    logs = [read_metrics(tmp_path / name / "metrics.jsonl") for name in ("first", "resumed")]
    assert [r.get("loss") for r in logs[0]] == [r.get("loss") for r in logs[1]]
