"""``train.threads``: each rule of ``choose_threads``, and the count a run applies, states and puts back."""

import torch

from cs336_lm.training import Trainer, train
from cs336_lm.training.threads import choose_threads


def test_a_number_is_taken_as_given():
    assert choose_threads("3", environ={"OMP_NUM_THREADS": "1"}).count == 3


def test_auto_is_one_thread_per_idle_core():
    assert choose_threads("auto", environ={}, cpus=2, load=0.2).count == 2
    assert choose_threads("auto", environ={}, cpus=2, load=0.6).count == 1  # the load rounds to one busy core
    assert choose_threads("auto", environ={}, cpus=2, load=7.5).count == 1  # at least one
    choice = choose_threads("auto", environ={}, cpus=16, load=3.2, ceiling=8)
    assert choice.count == 8  # never past torch's own default (the physical cores)
    assert choice.describe() == "8 (one per idle core: 16 CPUs, load average 3.2)"


def test_auto_shares_idle_cores_among_local_processes():
    choice = choose_threads("auto", environ={"LOCAL_WORLD_SIZE": "4"}, cpus=16, load=0.0)
    assert choice.count == 4 and "shared by 4 processes" in choice.reason


def test_auto_keeps_omp_num_threads_and_is_fixed_when_deterministic_on_a_cpu():
    assert choose_threads("auto", environ={"OMP_NUM_THREADS": "3"}, cpus=8, load=0).describe() == "3 (OMP_NUM_THREADS)"
    fixed = choose_threads("auto", deterministic_cpu=True, environ={}, cpus=8, load=0)
    assert fixed.count == 1 and "does not follow the load" in fixed.reason
    assert choose_threads("4", deterministic_cpu=True, environ={}).count == 4  # an explicit count stays


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
