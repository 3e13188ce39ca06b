"""``--threads N|auto`` of the commands that compute: shown in ``--help`` with its default, a bad value one error
line (exit 2) before anything loads, ``auto`` resolved by ``lm-train``'s rule and torch's count put back after.
Each command running with ``--threads 1`` is tested beside its other end-to-end tests."""

import importlib

import pytest
import torch

from cs336_lm.cli import cpu_threads
from cs336_lm.run import threads as rule

# each command's arguments but --threads, naming a run that does not exist: the thread check comes first
COMMANDS = {
    "lm-generate": ("cs336_lm.cli.generate", ["nowhere", "--prompt", "Once"]),
    "lm-serve": ("cs336_lm.cli.serve", ["nowhere", "--port", "0"]),
    "lm-perplexity": ("cs336_lm.cli.perplexity", ["nowhere", "--data", "nothing.txt"]),
    "lm-compare": ("cs336_lm.cli.compare", ["nowhere", "no-hf", "--prompt", "Once"]),
}


@pytest.fixture
def machine(monkeypatch):
    """A 4-CPU machine with 1.2 cores busy, torch's default 8 threads; ``calls`` records each count set."""
    calls: list[int] = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(rule, "usable_cpus", lambda: 4)
    monkeypatch.setattr(rule, "busy_cores", lambda: 1.2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    return calls


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_default_and_the_rule(command, capsys):
    module, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N|auto torch's CPU threads (with CUDA still only the CPU's): auto = $OMP_NUM_THREADS" in text
    assert "one per core other work leaves idle now (lm-train's rule), or N (default: auto)" in text


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_count_is_one_error_line_and_exit_2(command, value, tmp_path, monkeypatch, capsys):
    module, args = COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    assert importlib.import_module(module).main([*args, "--threads", value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: --threads must be auto or a positive integer; got '{value}'\n"
    assert torch.get_num_threads() == before


def test_auto_takes_one_thread_per_idle_core_and_puts_torch_back(machine):
    with cpu_threads("auto") as choice:
        assert machine == [3]  # 4 CPUs - round(1.2) busy
    assert choice.describe() == "3 (one per idle core: 4 CPUs, 1.2 busy now)"
    assert machine == [3, 8]


def test_auto_keeps_omp_num_threads_and_a_count_is_taken_as_given(machine, monkeypatch):
    with cpu_threads("5") as choice:
        assert choice.describe() == "5 (--threads)"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with cpu_threads("auto") as choice:
        assert choice.describe() == "2 (OMP_NUM_THREADS)"
    assert machine == [5, 8, 2, 8]


def test_the_count_is_put_back_when_the_command_fails(machine):
    with pytest.raises(RuntimeError), cpu_threads("auto"):
        raise RuntimeError("the body failed")
    assert machine == [3, 8]
