"""scripts/bench_checkpoint.py on the debug shape: it runs, times every step, and its checkpoints verify."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_checkpoint.py"


def test_bench_runs_and_reports_every_step(tmp_path, capsys, one_torch_thread):
    spec = importlib.util.spec_from_file_location("bench_checkpoint", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--dir", str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    steps = ["digest", "save, no digest", "save", "load, no check", "load", "verify (rotation)"]
    assert list(result["median_s"]) == steps and all(t > 0 for t in result["median_s"].values())
    assert result["preset"] == "debug" and result["checkpoint_bytes"] > 0
    assert "hash throughput" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # its temporary directory is gone
