"""``lm-sweep`` end to end on tiny runs: a 2×2 grid whose trials equal what ``lm-train`` writes for the same overrides,
a rerun that trains nothing, bad input refused before anything runs, a diverging trial beside a good one, seeds,
a search, and ``lm-plot`` of a sweep."""

import csv
import json
import statistics
import subprocess
import sys

import pytest
import yaml

from cs336_lm.training.metrics import read_metrics

from ..training.conftest import DEBUG_CONFIG, REPO
from .conftest import run_sweep_cli, sweep_env


def summary_rows(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def files_with_mtimes(directory):
    return {p.relative_to(directory): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def test_a_2x2_grid_trains_what_lm_train_trains_and_a_rerun_trains_nothing(tmp_path, fixed):
    out = tmp_path / "grid"
    items = [*fixed(), "optim.lr=1e-3,1e-2", "model.norm=pre,post"]
    done = run_sweep_cli(out, items)
    assert done.returncode == 0, done.stderr
    names = {"lr=0.001,norm=pre", "lr=0.001,norm=post", "lr=0.01,norm=pre", "lr=0.01,norm=post"}
    assert {p.name for p in out.iterdir() if (p / "metrics.jsonl").is_file()} == names
    rows = summary_rows(out)
    assert {r["trial"] for r in rows} == names and {r["status"] for r in rows} == {"done"}
    for r in rows:  # the summary's numbers are the trial's own metrics.jsonl
        vals = [m["val_loss"] for m in read_metrics(out / r["trial"] / "metrics.jsonl") if "val_loss" in m]
        assert float(r["best_val_loss"]) == min(vals) and float(r["final_val_loss"]) == vals[-1]
    assert [float(r["best_val_loss"]) for r in rows] == sorted(float(r["best_val_loss"]) for r in rows)
    assert "| lr=0.01," in done.stdout and (out / "summary.md").read_text().startswith("| trial |")

    # the reference: lm-train itself with the same overrides
    ref = tmp_path / "ref"
    cmd = [sys.executable, "-m", "cs336_lm.cli.train", "--config", str(DEBUG_CONFIG), *fixed()]
    cmd += ["optim.lr=0.01", "model.norm=post", f"train.out_dir={ref}"]
    subprocess.run(cmd, check=True, capture_output=True, env=sweep_env(), cwd=REPO, timeout=300)
    trial = out / "lr=0.01,norm=post"
    ours, theirs = (
        yaml.safe_load((trial / "config.yaml").read_text()),
        yaml.safe_load((ref / "config.yaml").read_text()),
    )
    ours["train"].pop("out_dir"), theirs["train"].pop("out_dir")
    assert ours == theirs
    losses = [(m["step"], m.get("loss"), m.get("val_loss")) for m in read_metrics(trial / "metrics.jsonl")]
    assert losses == [(m["step"], m.get("loss"), m.get("val_loss")) for m in read_metrics(ref / "metrics.jsonl")]
    assert sorted(p.name for p in (trial / "checkpoints").iterdir()) == sorted(
        p.name for p in (ref / "checkpoints").iterdir()
    )

    before = {name: files_with_mtimes(out / name) for name in names}
    again = run_sweep_cli(out, items)
    assert again.returncode == 0, again.stderr
    assert {name: files_with_mtimes(out / name) for name in names} == before  # nothing retrained, nothing touched
    assert "done" not in again.stderr.split("\n")[0:1]

    plotted = subprocess.run(
        [sys.executable, "-m", "cs336_lm.cli.plot", str(out), "--out", str(tmp_path / "fig" / "grid.png")],
        capture_output=True, text=True, env=sweep_env(), cwd=REPO, timeout=120,
    )  # fmt: skip
    assert plotted.returncode == 0, plotted.stderr
    from matplotlib.image import imread

    for png in ("grid.png", "grid-values.png"):
        image = imread(tmp_path / "fig" / png)
        assert image.shape[0] > 300 and image.shape[1] > 400 and image.std() > 0.05  # a drawn figure, not a blank

    other = run_sweep_cli(out, [*fixed(), "optim.lr=3e-3,1e-2", "model.norm=pre,post"])
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "already holds a sweep with other settings" in other.stderr and "optim.lr=1e-3,1e-2" in other.stderr


@pytest.mark.parametrize(
    ("items", "named"),
    [
        (["optim.lr=1e-3,oops"], "'oops'"),
        (["optim.lr=loguniform(1,)"], "loguniform(1,)"),
        (["optim.lrr=1e-3,1e-2"], "optim.lrr"),
        (["optim.lr=1e-3,-1"], "optim.lr must be >= 0"),
        (["optim.lr=1e-3", "optim.min_lr=1e-4,1e-2"], "optim.min_lr"),  # 1e-2 > lr: the schema refuses the point
        (["optim.lr=loguniform(1e-4,1e-1)"], "--trials"),
        (["train.out_dir=x,y"], "train.out_dir"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_trial(tmp_path, fixed, items, named):
    out = tmp_path / "never"
    result = run_sweep_cli(out, [*fixed(), *items], timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and named in result.stderr
    assert not out.exists()


def test_an_unreachable_database_is_one_line(tmp_path, fixed):
    out = tmp_path / "never"
    result = run_sweep_cli(out, [*fixed(), "optim.lr=1e-3,1e-2"], "--storage", "postgresql://nobody@127.0.0.1:9/x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: cannot open the study database postgresql://nobody@127.0.0.1:9/x")
    assert not out.exists()


def test_a_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, fixed):
    out = tmp_path / "lr"
    result = run_sweep_cli(out, [*fixed({"train.max_steps": 20}), "optim.lr=1e-2,1000"])
    assert result.returncode == 0, result.stderr
    rows = {r["trial"]: r for r in summary_rows(out)}
    assert rows["lr=0.01"]["status"] == "done" and rows["lr=1000"]["status"] == "diverged"
    assert [r["trial"] for r in summary_rows(out)] == ["lr=0.01", "lr=1000"]  # the diverged trial sorts last
    assert "diverged" in rows["lr=1000"]["error"] and "lr=1000 (diverged)" in (out / "summary.md").read_text()
    good = [m for m in read_metrics(out / "lr=0.01" / "metrics.jsonl") if "val_loss" in m]
    assert good[-1]["step"] == 20
    bad = [m["loss"] for m in read_metrics(out / "lr=1000" / "metrics.jsonl") if "loss" in m]
    assert bad[-1] > bad[0] + 3  # it stopped because its loss rose past the margin, and early
    assert len(bad) < 20


def test_seeds_give_mean_and_spread_per_point(tmp_path, fixed):
    out = tmp_path / "seeds"
    result = run_sweep_cli(out, [*fixed(), "optim.lr=1e-3,1e-2"], "--seeds", "2")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(out)
    assert sorted(r["trial"] for r in rows) == [
        "lr=0.001,seed=0",
        "lr=0.001,seed=1",
        "lr=0.01,seed=0",
        "lr=0.01,seed=1",
    ]
    assert {r["train.seed"] for r in rows} == {"0", "1"}
    text = (out / "summary.md").read_text()
    for point in ("lr=0.001", "lr=0.01"):
        losses = [float(r["best_val_loss"]) for r in rows if r["point"] == point]
        assert f"{statistics.fmean(losses):.4f} ± {statistics.stdev(losses):.4f}" in text
    runs = {json.loads((out / "sweep.json").read_text())["seeds"]}
    assert runs == {2}


def test_a_search_draws_its_trials_in_range_and_a_rerun_draws_no_more(tmp_path, fixed):
    out = tmp_path / "search"
    items = [*fixed(), "optim.lr=loguniform(1e-3,1e-1)", "model.norm=pre,post"]
    result = run_sweep_cli(out, items, "--trials", "3", "--sampler", "random")
    assert result.returncode == 0, result.stderr
    rows = summary_rows(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"done"}
    for r in rows:
        assert 1e-3 <= float(r["optim.lr"]) <= 1e-1 and r["model.norm"] in ("pre", "post")
        config = yaml.safe_load((out / r["trial"] / "config.yaml").read_text())
        assert config["optim"]["lr"] == float(r["optim.lr"]) and config["model"]["norm"] == r["model.norm"]
    again = run_sweep_cli(out, items, "--trials", "3", "--sampler", "random")
    assert again.returncode == 0 and len(summary_rows(out)) == 3


def test_median_pruning_stops_a_trial_worse_than_the_others(tmp_path, fixed):
    out = tmp_path / "pruned"
    steps = {"train.max_steps": 300, "train.eval_every": 10, "train.log_every": 10, "train.ckpt_every": 100}
    items = [*fixed(steps), "optim.lr=1e-2,3e-3,1e-6"]
    result = run_sweep_cli(out, items, "--prune", "median")
    assert result.returncode == 0, result.stderr
    rows = {r["trial"]: r for r in summary_rows(out)}
    assert rows["lr=0.01"]["status"] == "done" and rows["lr=0.003"]["status"] == "done"
    assert rows["lr=1e-06"]["status"] == "pruned"  # its first validation loss is above the others' at that step
    assert int(float(rows["lr=1e-06"]["step"])) < 300
