"""scripts/bench_recipe.py at its --quick size: the data is made, two recipes train as lm-train processes, the
table prints and the JSON and plot are written; a second invocation reuses the finished runs."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_recipe.py"


def load():
    spec = importlib.util.spec_from_file_location("bench_recipe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_recipe"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_bench_recipe_quick_writes_table_json_and_plot(tmp_path, capsys, one_torch_thread):
    bench = load()
    out, png = tmp_path / "recipe.json", tmp_path / "recipe.png"
    args = ["--quick", "--work-dir", str(tmp_path / "work"), "--json", str(out), "--plot", str(png)]
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "| recipe | lr | steps to L |" in printed and "| muon |" in printed
    record = json.loads(out.read_text())
    assert {"benchmark", "date", "command", "machine", "settings", "recipes", "references", "results", "runs"} <= set(
        record
    )
    assert set(record["references"]) == {"adamw"} and set(record["results"]["adamw"]) == {"muon"}
    row = record["results"]["adamw"]["muon"]
    keys = {"steps", "steps_ratio", "train_s", "time_ratio", "val_mean", "val_sd", "p", "significant", "target"}
    assert keys <= set(row) and row["train_s"] > 0
    assert record["references"]["adamw"]["target"] == record["runs"][0]["val_loss"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = len(record["runs"])
    assert bench.main(args) == 0  # every run is reused: nothing trains again
    assert "steps seed 0" in capsys.readouterr().out and len(json.loads(out.read_text())["runs"]) == runs


def test_fewest_steps_bisects_the_ladder():
    bench = load()
    tried = []

    def passes(k):
        tried.append(k)
        return k >= 90

    assert bench.fewest_steps([60, 90, 120, 150], passes) == 90 and tried == [120, 90, 60]
    assert bench.fewest_steps([60, 90], lambda k: False) is None
    assert bench.fewest_steps([60, 90], lambda k: True) == 60


def test_welch_p_is_one_sided_and_needs_two_seeds():
    bench = load()
    assert bench.welch_p([1.0, 1.1, 1.05], [2.0, 2.1, 2.05]) < 0.01
    assert bench.welch_p([2.0, 2.1, 2.05], [1.0, 1.1, 1.05]) > 0.99
    assert bench.welch_p([1.0], [2.0, 2.1]) is None


def test_bench_recipe_with_references_only_prints_no_table(tmp_path, capsys, one_torch_thread):
    """Asked for a reference alone, it trains the reference's runs and ends without a comparison table."""
    bench = load()
    args = ["--quick", "--recipes", "adamw", "--references", "adamw", "--work-dir", str(tmp_path / "work")]
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "adamw 6 steps seed 0" in printed and "| recipe |" not in printed
