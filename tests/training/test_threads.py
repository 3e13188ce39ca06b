"""``train.threads`` in a run: the count it applies, states and puts back (the rule: tests/run/test_threads.py)."""

import torch

from cs336_lm.training import Trainer, train


def test_a_run_applies_and_states_its_count_and_train_puts_it_back(tmp_path, tiny_config, monkeypatch, capsys):
    seen = []
    original = Trainer.train_step

    def train_step(self):
        seen.append(torch.get_num_threads())
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    before = torch.get_num_threads()  # 1: the tests' fixture
    train(tiny_config(tmp_path / "run", {"train.threads": 2, "train.max_steps": 2}))
    assert seen == [2, 2] and torch.get_num_threads() == before
    assert "torch CPU threads: 2 (train.threads)" in capsys.readouterr().out


def test_a_cpu_run_keeps_freed_memory_unless_told_not_to(tmp_path, tiny_config, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("cs336_lm.training.setup.reuse_freed_memory", lambda: calls.append(1) or True)
    train(tiny_config(tmp_path / "on", {"train.max_steps": 1}))
    assert calls == [1] and "; freed memory kept for reuse" in capsys.readouterr().out
    train(tiny_config(tmp_path / "off", {"train.max_steps": 1, "train.reuse_cpu_memory": False}))
    assert calls == [1] and "freed memory kept" not in capsys.readouterr().out
