"""The whole-kernel checks that run in a subprocess: out-of-bounds guard bands under the interpreter, and
compilation of every kernel variant for an H100 (sm_90) without a GPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(not INTERPRETING, reason="runs Triton on CPU tensors through the interpreter")


def run_script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(HERE / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)


@pytest.mark.slow
@needs_interpreter
def test_no_out_of_bounds_access():
    pytest.importorskip("triton")
    result = run_script("guard_check.py")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_kernels_compile_for_h100(tmp_path):
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path)}
    result = run_script("aot_compile.py", "90", "--switches-on", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
