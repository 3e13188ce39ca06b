"""The plan: every trial of a grid (× seeds) with the overrides lm-train gets, explicit points, checks before anything
runs, and what makes two sweeps the same sweep. No training here."""

import pytest

from cs336_lm.errors import ConfigError
from cs336_lm.sweep import SweepPlan
from cs336_lm.sweep.plan import difference
from cs336_lm.sweep.summary import PointStats, SummaryRow, beyond_spread, seed_table, sort_rows

from ..training.conftest import DEBUG_CONFIG


def test_a_grid_with_seeds_lists_every_trial_in_order():
    plan = SweepPlan.from_args(
        DEBUG_CONFIG, ["train.max_steps=5", "optim.lr=1e-3,1e-2", "model.norm=pre,post"], seeds=2
    )
    trials = plan.grid_trials()
    assert plan.total() == len(trials) == 8
    assert [t.name for t in trials[:3]] == ["lr=0.001,norm=pre,seed=0", "lr=0.001,norm=pre,seed=1",
                                             "lr=0.001,norm=post,seed=0"]  # fmt: skip
    assert trials[1].point == "lr=0.001,norm=pre"
    assert trials[1].overrides == ("train.max_steps=5", "optim.lr=0.001", "model.norm=pre", "train.seed=1")


def test_explicit_points_vary_together():
    points = [{"model.d_model": 32, "train.max_steps": 8}, {"model.d_model": 64, "train.max_steps": 4}]
    plan = SweepPlan.from_points(DEBUG_CONFIG, points, fixed=["optim.lr=1e-3"])
    assert [t.name for t in plan.grid_trials()] == ["d_model=32,max_steps=8", "d_model=64,max_steps=4"]
    with pytest.raises(ConfigError, match=r"model\.d_model"):
        SweepPlan.from_points(DEBUG_CONFIG, [{"model.d_model": -1}])


@pytest.mark.parametrize(
    ("items", "options", "message"),
    [
        (["train.seed=1,2"], {"seeds": 2}, "--seeds 2 sets train.seed"),
        (["optim.lr=1e-3,1e-2"], {"trials": 3}, "--trials is for a search"),
        (["optim.lr=uniform(1e-3,1e-2)"], {"trials": 0}, "needs --trials N"),
        (["optim.lr=1e-3"], {"seeds": 0}, "--seeds must be at least 1"),
        (["train.resume=none"], {}, "train.resume is set by lm-sweep"),
        (["model.ffn=choice(swiglu,gelu)"], {"trials": 2}, "model.ffn=choice(swiglu,gelu)"),
    ],
)
def test_plans_that_cannot_run_are_refused(items, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SweepPlan.from_args(DEBUG_CONFIG, items, **options)


def test_the_same_sweep_and_a_different_one():
    a = SweepPlan.from_args(DEBUG_CONFIG, ["optim.lr=1e-3,1e-2"]).describe()
    assert difference(a, SweepPlan.from_args(DEBUG_CONFIG, ["optim.lr=1e-3,1e-2"]).describe()) is None
    b = SweepPlan.from_args(DEBUG_CONFIG, ["optim.lr=1e-3,3e-2"]).describe()
    assert difference(a, b) == "axes: optim.lr=1e-3,1e-2 before, now optim.lr=1e-3,3e-2"
    c = SweepPlan.from_args(DEBUG_CONFIG, ["optim.lr=1e-3,1e-2"], seeds=2).describe()
    assert difference(a, c) == "seeds: 1 before, now 2"


def test_the_spread_rule_and_the_order():
    a, b = PointStats("a", [3.00, 3.02, 2.98]), PointStats("b", [3.10, 3.12, 3.08])
    assert beyond_spread(a, b)  # 0.10 apart, std 0.02 each: the intervals do not overlap
    assert not beyond_spread(a, PointStats("c", [3.0, 3.1, 2.95]))
    rows = [
        SummaryRow("x", "x", {}, "diverged", {"best_val_loss": 1.0}),
        SummaryRow("y", "y", {}, "done", {"best_val_loss": 3.0}),
        SummaryRow("z", "z", {}, "failed", {}),
        SummaryRow("w", "w", {}, "done", {"best_val_loss": 2.0}),
    ]
    assert [r.name for r in sort_rows(rows)] == ["w", "y", "x", "z"]
    seeds = [SummaryRow(f"p{i}s{j}", f"p{i}", {}, "done", {"best_val_loss": v}) for i, vs in enumerate(
        [[3.0, 3.02, 2.98], [3.1, 3.12, 3.08]]) for j, v in enumerate(vs)]  # fmt: skip
    table = seed_table(seeds)
    assert "| p0 | 3 | 3.0000 ± 0.0200 | best |  |" in table and "| p1 | 3 | 3.1000 ± 0.0200 | +0.1000 | yes |" in table


def test_a_database_failing_mid_sweep_is_one_error_line(tmp_path, monkeypatch):
    import sqlalchemy.exc

    from cs336_lm.errors import LMError
    from cs336_lm.sweep import run_sweep
    from cs336_lm.sweep.study import SweepStudy

    def gone(self, trial):
        raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))

    monkeypatch.setattr(SweepStudy, "claim", gone)
    plan = SweepPlan.from_args(DEBUG_CONFIG, ["optim.lr=1e-3,1e-2"])
    with pytest.raises(
        LMError, match=r"the study database sqlite:///.*study\.db failed: .*server closed the connection"
    ):
        run_sweep(plan, tmp_path / "sweep", workers=2, progress=False)
