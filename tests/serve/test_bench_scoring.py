"""scripts/bench_scoring.py on the debug shape: it runs end to end and both sides score the same tokens to the same
total log-likelihood."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("bench_scoring", SCRIPTS / "bench_scoring.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_scoring"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPTS))
        sys.modules.pop("bench_scoring", None)


def test_bench_runs_and_both_sides_score_the_same(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--preset", "debug", "--context", "64", "--windows", "5", "--clients", "3", "--repeats", "1"]
    assert bench.main([*args, "--threads", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["tokens"] == 5 * 63 and len(results["ratios"]) == 1 and results["ratio"] > 0
    assert results["loglik_server"] == pytest.approx(results["loglik_in_process"], rel=1e-5)
    assert "server / in process" in capsys.readouterr().out
