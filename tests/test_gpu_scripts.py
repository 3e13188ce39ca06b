"""The GPU check's pieces that can run without a GPU: its shell syntax, and its scripts as smoke runs on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_check.sh")], check=False).returncode == 0


def test_gpu_training_benchmark_runs_on_the_cpu(tmp_path):
    out = tmp_path / "train.json"
    command = [sys.executable, str(REPO / "scripts" / "bench_gpu_train.py"), "--device", "cpu", "--presets", "debug",
               "--kernels", "torch", "--seconds", "0.2", "--no-compile", "--json", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert '"tokens_per_s"' in out.read_text()
