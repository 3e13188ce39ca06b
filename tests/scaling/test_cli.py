"""``lm-scaling`` end to end: plan → run (an lm-sweep study where cs336_lm.sweep is installed) → fit on
configs/debug.yaml; the fit of a study written from a known law; and bad input (a budget too small, missing,
diverged and too few runs, mixed configs) as one ``error:`` line with exit status 2, or a warning where the runs
can still be used."""

import json
import math

import pytest
import yaml

from cs336_lm.cli.scaling import main
from cs336_lm.scaling.study import load_study, read_results
from cs336_lm.scaling.sweep import sweep_available
from cs336_lm.training.metrics import read_metrics

from .conftest import DEBUG_CONFIG, write_fake_runs

BUDGETS = "1e9,3e9"


def plan(tmp_path, overrides, *extra, config=DEBUG_CONFIG):
    return main(["plan", "--config", str(config), *overrides, "--budgets", BUDGETS, "--sizes", "3",
                 "--min-steps", "20", "--out", str(tmp_path / "study"), *extra])  # fmt: skip


def edit_yaml(path, section: str, key: str, value) -> None:
    """Set ``section.key`` in the YAML file at ``path``."""
    config = yaml.safe_load(path.read_text())
    config[section][key] = value
    path.write_text(yaml.safe_dump(config))


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow
def test_plan_train_fit_end_to_end(tmp_path, tiny_inputs, capsys):
    assert plan(tmp_path, tiny_inputs) == 0
    study = load_study(tmp_path / "study")
    assert [r.name for r in study.runs] == [
        "c1e+09-n22k", "c1e+09-n35k", "c1e+09-n123k", "c3e+09-n22k", "c3e+09-n70k", "c3e+09-n385k"
    ]  # fmt: skip
    assert main(["run", str(tmp_path / "study"), "--workers", "1"]) == 0
    losses = read_results(study).finished
    assert sorted(losses) == sorted(r.name for r in study.runs)
    for run in study.runs:  # each run trained its own shape for its own steps, and ended with an evaluation
        config = yaml.safe_load((study.run_dir(run) / "config.yaml").read_text())
        assert config["model"]["d_model"] == run.shape["d_model"] and config["train"]["max_steps"] == run.steps
        records = read_metrics(study.run_dir(run) / "metrics.jsonl")
        assert [r["val_loss"] for r in records if "val_loss" in r] == [losses[run.name]]
    assert losses["c3e+09-n22k"] < losses["c1e+09-n22k"]  # three times the compute, a lower loss
    if sweep_available():  # the runs are an lm-sweep study: its record beside the plan
        assert (tmp_path / "study" / "sweep.json").is_file() and study.layout == "sweep"
    capsys.readouterr()
    status = main(["fit", str(tmp_path / "study"), "--bootstrap", "50", "--predict", "1e10"])
    out, err = capsys.readouterr()
    if status == 0:
        record = json.loads((tmp_path / "study" / "fit.json").read_text())
        assert len(record["runs"]) == 6 and record["prediction"]["budget"] == 1e10
        assert (tmp_path / "study" / "isoflops.png").read_bytes()[:4] == b"\x89PNG"
        assert "a = " in out and "prediction interval" in out
    else:  # runs of a few dozen steps favour the smallest model: the fit must refuse to extrapolate, and say why
        assert status == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert "lies outside its sizes" in err or "no minimum" in err, err
        assert not (tmp_path / "study" / "fit.json").exists()


def test_fit_recovers_the_minima_of_a_known_law(tmp_path, tiny_inputs, capsys):
    assert plan(tmp_path, tiny_inputs, "--sizes", "4") == 0
    n_opt = write_fake_runs(tmp_path / "study")
    assert main(["fit", str(tmp_path / "study"), "--bootstrap", "50", "--predict", "1e10"]) == 0
    record = json.loads((tmp_path / "study" / "fit.json").read_text())
    for fitted in record["budgets"]:
        assert fitted["n_opt"] == pytest.approx(n_opt[fitted["budget"]], rel=1e-6)
        assert fitted["l_opt"] == pytest.approx(5 * fitted["budget"] ** -0.05, rel=1e-6)
    a = math.log(n_opt[3e9] / n_opt[1e9]) / math.log(3)  # two budgets: the law goes through both minima
    assert record["laws"]["n_opt"]["exponent"] == pytest.approx(a, rel=1e-6)
    assert record["prediction"]["loss"] == pytest.approx(5 * 1e10**-0.05, rel=1e-6)


def test_dry_run_prints_a_measured_time_per_run_and_writes_nothing(tmp_path, tiny_inputs, capsys, monkeypatch):
    import cs336_lm.scaling.measure as measure

    measured = []  # the shapes timed: each once, though budgets share them
    real = measure.tokens_per_second

    def counting(args, batch_size, **kwargs):
        measured.append((args.d_model, args.num_layers))
        return real(args, batch_size, steps=1, warmup=1)

    monkeypatch.setattr(measure, "tokens_per_second", counting)
    assert plan(tmp_path, tiny_inputs, "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert not (tmp_path / "study").exists()
    assert out[0].split()[-2:] == ["tok/s", "time"] and out[-1].startswith("6 runs, estimated ")
    rows = out[1:-1]
    assert len(rows) == 6 and all(row.split()[-1][-1] in "snh" for row in rows)  # "42s", "1.5min", "1.2h"
    assert len(measured) == len(set(measured)) == 5  # c1e+09 and c3e+09 both train the 22k shape


def test_a_budget_too_small_for_any_shape(tmp_path, tiny_inputs, capsys):
    status = main(["plan", "--config", str(DEBUG_CONFIG), *tiny_inputs, "--budgets", "1e6", "--out", str(tmp_path)])
    assert status == 2 and "too small for any shape" in one_error(capsys)
    assert not (tmp_path / "scaling.json").exists()


def test_missing_and_diverged_runs_are_left_out_with_a_warning(tmp_path, tiny_inputs, capsys):
    assert plan(tmp_path, tiny_inputs, "--sizes", "6") == 0
    write_fake_runs(tmp_path / "study")
    study = load_study(tmp_path / "study")
    (study.run_dir(study.runs[0]) / "metrics.jsonl").unlink()
    diverged = study.run_dir(study.runs[-1]) / "metrics.jsonl"
    diverged.write_text('{"step": 1, "loss": NaN}\n')
    with pytest.warns(UserWarning) as caught:
        assert main(["fit", str(tmp_path / "study"), "--bootstrap", "20"]) == 0
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"run {study.runs[0].name} has no final validation loss") for m in messages), messages
    assert any(m.startswith(f"run {study.runs[-1].name} diverged") for m in messages), messages


def test_a_budget_with_fewer_than_three_runs_is_refused(tmp_path, tiny_inputs, capsys):
    assert plan(tmp_path, tiny_inputs) == 0
    write_fake_runs(tmp_path / "study")
    study = load_study(tmp_path / "study")
    (study.run_dir(study.runs[1]) / "metrics.jsonl").unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="has no final validation loss"):
        assert main(["fit", str(tmp_path / "study")]) == 2
    expected = f"error: budget 1e+09 has 2 finished run(s) in {tmp_path / 'study'}; a fit needs 3 per budget"
    assert one_error(capsys) == expected


def test_runs_of_another_config_in_one_directory_are_refused(tmp_path, tiny_inputs, capsys):
    assert plan(tmp_path, tiny_inputs) == 0
    write_fake_runs(tmp_path / "study")
    study = load_study(tmp_path / "study")
    edit_yaml(study.run_dir(study.runs[2]) / "config.yaml", "optim", "lr", 0.5)
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "study")]) == 2
    assert "another config than the study's (optim.lr: 0.01 vs 0.5)" in one_error(capsys)
    # and a second plan of another config into the same directory
    assert plan(tmp_path, [*tiny_inputs, "optim.lr=0.5"]) == 2
    assert "holds a study of another config (optim.lr: 0.01 vs 0.5)" in one_error(capsys)


def test_fit_and_verify_refuse_what_is_not_a_study_or_not_an_extrapolation(tmp_path, tiny_inputs, capsys):
    assert main(["fit", str(tmp_path)]) == 2
    assert "is not a scaling study" in one_error(capsys)
    assert plan(tmp_path, tiny_inputs) == 0
    write_fake_runs(tmp_path / "study")
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "study"), "--budget", "2e9", "--bootstrap", "20"]) == 2
    assert "must be a finite budget above every fitted one" in one_error(capsys)


def test_run_and_verify_refuse_a_config_file_edited_since_the_plan(tmp_path, tiny_inputs, capsys):
    config = tmp_path / "base.yaml"
    config.write_text(DEBUG_CONFIG.read_text())
    assert plan(tmp_path, tiny_inputs, "--sizes", "4", config=config) == 0
    write_fake_runs(tmp_path / "study")
    edit_yaml(config, "optim", "weight_decay", 0.5)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "study")]) == 2
    assert "is no longer the config" in one_error(capsys)
    assert main(["verify", str(tmp_path / "study"), "--budget", "1e10", "--bootstrap", "20"]) == 2
    assert "(optim.weight_decay: 0.1 vs 0.5)" in one_error(capsys)
    assert not (tmp_path / "study" / "verify").exists()
    config.unlink()  # or read from another directory than the plan's
    assert main(["verify", str(tmp_path / "study"), "--budget", "1e10", "--bootstrap", "20"]) == 2
    assert "is not found from" in one_error(capsys)
    assert main(["verify", str(tmp_path / "study"), "--budget", "inf", "--bootstrap", "20"]) == 2
    assert "must be a finite budget" in one_error(capsys)


def test_the_runs_are_an_lm_sweep_study_of_explicit_points(tmp_path, tiny_inputs):
    pytest.importorskip("cs336_lm.sweep", reason="needs lm-sweep (cs336_lm.sweep, issue #25), not on this branch yet")
    from cs336_lm.scaling.sweep import point, sweep_plan

    assert plan(tmp_path, tiny_inputs) == 0
    study = load_study(tmp_path / "study")
    trials = sweep_plan(study).grid_trials()
    assert study.layout == "sweep" and len(trials) == len(study.runs)
    for run, trial in zip(study.runs, trials, strict=True):
        assert trial.values == point(run) and study.run_dir(run) == tmp_path / "study" / trial.name
