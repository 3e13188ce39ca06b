"""scripts/bench_admission.py on the debug shape: both admission orders run the same requests to the end, and
behind the backlog the engine's order gets every chat its first token in fewer steps than first come, first
served (the backlog alone fills several steps' budget)."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_bench_runs_and_chats_wait_fewer_steps(tmp_path, capsys):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location("bench_admission", SCRIPTS / "bench_admission.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        out = tmp_path / "bench.json"
        args = ["--preset", "debug", "--backlog", "8", "--clients", "2", "--chats", "4", "--max-batch-tokens", "128"]
        assert bench.main([*args, "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    finally:
        sys.path.remove(str(SCRIPTS))
    runs = {r["policy"]: r for r in json.loads(out.read_text())["runs"]}
    assert runs["engine"]["most_steps_waited"] < runs["fcfs"]["most_steps_waited"]
    assert "first come first served" in capsys.readouterr().out
