"""scripts/bench_threads.py and scripts/bench_scaler.py at a tiny size: they run, write their JSON, and the
thread benchmark's CPU burner is gone afterwards."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_threads_compares_auto_with_fixed_counts_idle_and_busy(tmp_path, one_torch_thread, monkeypatch):
    bench = load("bench_threads")
    burners = []
    real_popen = bench.subprocess.Popen

    def popen(*args, **kwargs):
        burners.append(real_popen(*args, **kwargs))
        return burners[-1]

    monkeypatch.setattr(bench.subprocess, "Popen", popen)
    out = tmp_path / "threads.json"
    args = ["--parts", "train", "--steps", "1", "--repeats", "1", "--settle", "0", "--context-length", "32"]
    assert bench.main([*args, "--batch-size", "2", "--fixed", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["scenarios"]) == {"idle", "busy"}
    for result in record["scenarios"].values():
        train = result["train"]
        assert set(train["median_tokens_per_s"]) == {"auto", "1"} and train["ratios"]["auto/1"] > 0
        assert "generate" not in result
    assert len(burners) == 1 and burners[0].poll() is not None  # started for "busy", stopped after it
    with pytest.raises(ProcessLookupError):
        os.kill(burners[0].pid, 0)


@pytest.mark.slow  # two lm-generate processes, a few seconds each to start
def test_bench_threads_runs_lm_generate_beside_a_burner(tmp_path, capsys):
    out = tmp_path / "threads.json"
    args = ["--quick", "--parts", "generate", "--scenarios", "busy", "--gen-tokens", "4", "--settle", "0"]
    assert load("bench_threads").main([*args, "--fixed", "1", "--json", str(out)]) == 0
    busy = json.loads(out.read_text())["scenarios"]["busy"]
    generate = busy["generate"]
    assert set(generate["median_tokens_per_s"]) == {"auto", "1"} and generate["ratios"]["auto/1"] > 0
    assert generate["auto_chose"][0] >= 1 and "train" not in busy
    assert "| busy (load " in capsys.readouterr().out


def test_bench_scaler_reports_the_gradient_pass_and_whole_steps(tmp_path, one_torch_thread):
    out = tmp_path / "scaler.json"
    assert load("bench_scaler").main(["--quick", "--preset", "debug", "--batch-size", "2", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["gradient_pass"]["unscale_s"] > 0 and record["gradient_pass"]["gradient_values"] > 0
    assert set(record["whole_steps"]["median_step_s"]) == {"enabled", "disabled"}
