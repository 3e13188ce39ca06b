"""scripts/bench_generate.py on the debug shape: it runs, and greedy tokens equal HuggingFace ``generate``'s."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_generate.py"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("bench_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_runs_and_matches_hf_generate(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--preset", "debug", "--new-tokens", "12", "--repeats", "1", "--batch-sizes", "1,3", "--json", str(out)]
    assert bench.main(args) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["batch"] for r in results] == [1, 3]
    assert all(r["same_tokens_as_hf"] for r in results)
    assert results[0]["same_tokens_without_cache"]
    assert "ours / HF generate" in capsys.readouterr().out
