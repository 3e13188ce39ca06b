"""``optim.name`` through the trainer: AdamW runs equal the plain AdamW loop bit for bit, Muon's groups follow the
schedule at their own peak rates, the opening lines name the groups, and a resume keeps the optimizer it had.
(Muon's bitwise resume: test_trainer.py's ``test_interrupted_and_resumed_run_is_bitwise_identical``.)"""

import numpy as np
import pytest
import torch

from cs336_lm.data import get_batch, load_tokens
from cs336_lm.errors import ConfigError
from cs336_lm.nn import TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, Muon, clip_grad_norm_, cosine_lr, param_groups_for_weight_decay
from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.training import Trainer, train, trainer
from cs336_lm.training.metrics import read_metrics

QUIET = {"train.eval_every": 0, "train.ckpt_every": 0, "train.dtype": "fp32"}


def test_an_adamw_run_is_the_adamw_loop_written_out_by_hand(tmp_path, tiny_config):
    """The trainer's per-group rate (peak × schedule factor) leaves AdamW's rate exactly the schedule's: the logged
    losses and final weights equal a plain loop's, to the bit (one thread, fp32)."""
    cfg = tiny_config(tmp_path / "run", {**QUIET, "train.max_steps": 8})
    train(cfg)
    logged = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]

    o, t = cfg.optim, cfg.train
    torch.manual_seed(t.seed)
    model = TransformerLM.from_args(cfg.model.args)
    groups = param_groups_for_weight_decay(model, o.weight_decay)
    opt = AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)
    tokens, sampler = load_tokens(cfg.data.train_path), np.random.default_rng([t.seed, 0])
    losses = []
    for step in range(t.max_steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, o.lr, o.min_lr, o.warmup_iters, t.max_steps)
        x, y = get_batch(tokens, t.batch_size, cfg.model.context_length, "cpu", generator=sampler)
        loss = cross_entropy(model(x), y)
        loss.backward()
        clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses == logged
    saved = read_checkpoint(RunDir(tmp_path / "run").latest())["model"]
    assert all(torch.equal(saved[name], p) for name, p in model.state_dict().items())


def test_muon_groups_follow_the_schedule_at_their_own_peak_rates(tmp_path, tiny_config, monkeypatch, capsys):
    rates = {"optim.muon_lr": 0.02, "optim.embed_lr": 0.05, "optim.head_lr": 0.004}  # gains: optim.lr (0.01)
    cfg = tiny_config(tmp_path / "run", {**QUIET, "optim.name": "muon", **rates})
    seen = []
    original = Muon.step

    def step(self, closure=None):
        seen.append({g["name"]: g["lr"] for g in self.param_groups})
        return original(self, closure)

    monkeypatch.setattr(Muon, "step", step)
    train(cfg)
    assert len(seen) == cfg.train.max_steps
    peaks = {"muon": 0.02, "embeddings": 0.05, "head": 0.004, "gains": cfg.optim.lr}
    for i, lrs in enumerate(seen):
        factor = trainer.lr_at(i, cfg) / cfg.optim.lr
        assert lrs == pytest.approx({name: peak * factor for name, peak in peaks.items()}, rel=1e-12)
    assert [lrs["gains"] for lrs in seen] == [trainer.lr_at(i, cfg) for i in range(len(seen))]  # to the bit
    opening = capsys.readouterr().out
    line = next(line for line in opening.splitlines() if line.startswith("optimizer "))
    assert line.startswith("optimizer muon, cosine schedule: muon (Muon) 7 tensors 10,240 parameters lr 0.02 wd 0.1")
    assert "| embeddings (AdamW) 1 tensor 8,224 parameters lr 0.05 wd 0.1 |" in line
    assert "| head (AdamW) 1 tensor 8,224 parameters lr 0.004 wd 0.1 |" in line
    assert line.endswith("| gains (AdamW) 3 tensors 96 parameters lr 0.01 wd 0")


def test_muon_learns(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", {**QUIET, "optim.name": "muon", "train.max_steps": 20})
    train(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_resume_with_another_optimizer_is_refused(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "run", {**QUIET, "train.max_steps": 2}))
    with pytest.raises(ConfigError, match=r"optimizer state is adamw's, the config asks for optim.name=muon"):
        Trainer(tiny_config(tmp_path / "run", {**QUIET, "optim.name": "muon"}))
    assert not (tmp_path / "run" / "checkpoints" / "step_00000006.pt").exists()
