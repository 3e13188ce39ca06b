"""The CPU thread rule (``train.threads``, every command's ``--threads``): each rule of ``choose_threads``."""

import pytest

from cs336_lm.errors import ConfigError
from cs336_lm.run import threads as threads_module
from cs336_lm.run.threads import check_threads, choose_threads


def test_a_number_is_taken_as_given():
    assert choose_threads("3", environ={"OMP_NUM_THREADS": "1"}).count == 3


@pytest.mark.parametrize("spec", ["0", "-1", "abc", "", "1.5"])
def test_anything_but_auto_or_a_positive_count_is_an_error_naming_the_option(spec):
    with pytest.raises(ConfigError, match=r"^--threads must be auto or a positive integer; got"):
        choose_threads(spec, option="--threads", environ={})
    assert check_threads(" Auto ") == "auto" and check_threads("2") == "2"


def test_a_count_is_stated_with_the_option_that_gave_it():
    assert choose_threads("2", option="--threads").describe() == "2 (--threads)"
    assert choose_threads("2").describe() == "2 (train.threads)"


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


def _stat(cpus: dict[str, tuple[int, int]]) -> str:
    """/proc/stat lines with (busy, idle) ticks per CPU: user=busy, idle=idle, the rest 0."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"{name} {busy} 0 0 {idle} 0 0 0 0 0 0" for name, (busy, idle) in cpus.items()]
    return "\n".join([*lines, "intr 0", "ctxt 0"]) + "\n"


def test_busy_cores_counts_the_usable_cpus_other_work_keeps_busy_now(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(_stat({"cpu0": (100, 100), "cpu1": (0, 200), "cpu2": (0, 0)}))
    after = _stat({"cpu0": (150, 150), "cpu1": (0, 300), "cpu2": (100, 0)})  # cpu2 is outside the affinity mask
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr("time.sleep", lambda seconds: stat.write_text(after))
    assert threads_module.busy_cores(stat=stat) == pytest.approx(0.5)  # cpu0 half busy, cpu1 idle
    assert threads_module.busy_cores(stat=tmp_path / "missing") is None


def test_auto_counts_cores_busy_now_and_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(threads_module, "busy_cores", lambda: 1.2)
    monkeypatch.setattr(threads_module, "load_average", lambda: 0.0)  # a job that just ended: not counted
    assert choose_threads("auto", environ={}, cpus=2).describe() == "1 (one per idle core: 2 CPUs, 1.2 busy now)"
    monkeypatch.setattr(threads_module, "busy_cores", lambda: None)  # no /proc/stat (macOS)
    monkeypatch.setattr(threads_module, "load_average", lambda: 1.6)
    assert choose_threads("auto", environ={}, cpus=4).describe() == "2 (one per idle core: 4 CPUs, load average 1.6)"
