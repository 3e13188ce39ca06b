"""scripts/bench_serve.py on the debug shape: it runs end to end, and the server delivers every token the offline
engine generates (no stop: each request runs exactly its ``max_new_tokens``)."""

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
        spec = importlib.util.spec_from_file_location("bench_serve", SCRIPTS / "bench_serve.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_serve"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPTS))
        sys.modules.pop("bench_serve", None)


def test_bench_runs_and_every_token_arrives(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--preset", "debug", "--requests", "6", "--concurrency", "1,4", "--repeats", "1", "--threads", "1"]
    assert bench.main([*args, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    expected = sum(r.max_new_tokens for r in bench.mixed_workload(6, seed=0, vocab_size=512))
    assert results["server"]["4"]["tokens"] == expected and results["server"]["4"]["requests"] == 6
    assert all(run["tokens"] == expected for run in results["offline"])
    assert results["server"]["1"]["ttft_p50_ms"] > 0 and results["server"]["1"]["itl_p99_ms"] > 0
    assert len(results["ratios_at_top"]) == 1 and results["ratio_at_top"] > 0
    assert "server / offline at concurrency 4" in capsys.readouterr().out


def test_gaps_spread_a_chunk_over_its_tokens(bench):
    trace = bench.Trace(sent=0.0, chunks=[(1.0, 1), (1.5, 2), (2.5, 4)])
    assert trace.ttft() == 1.0 and trace.tokens == 4
    assert trace.gaps() == [0.5, 0.5, 0.5]
    assert bench.quantile([1.0, 2.0, 3.0], 0.5) == 2.0 and bench.quantile([1.0, 2.0, 3.0], 0.99) == 3.0
