"""The study's runs as an ``lm-sweep`` study (``cs336_lm.sweep``): one trial per planned run, so that the runs
train, resume and spread over workers and machines the way every sweep does.

The sweep is a sweep of explicit points (``SweepPlan.from_points``) into the study directory itself: each point is
a run's shape and steps (``model.d_model``, ``model.num_layers``, ``model.num_heads``, ``model.d_ff``,
``train.max_steps``), the fixed overrides are the user's, then ``model.num_kv_heads=null`` and evaluation at the
end only. Each trial's run directory is ``DIR/<trial name>`` (lm-sweep names it from the point), beside
``scaling.json``, ``sweep.json`` and the sweep's record. ``lm-scaling run DIR`` is ``run_sweep`` on that plan: run
it again to resume, or run it on several machines with one ``--storage`` URL to share the trials.

Where ``cs336_lm.sweep`` is not installed, the study keeps its runs in ``DIR/runs/<run name>`` and ``lm-scaling
run`` trains them one after the other in this process (``train.resume=auto`` resumes an interrupted one).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from cs336_lm.scaling.plan import PlannedRun
from cs336_lm.scaling.study import RUN_SETTINGS, Study, read_results, train_run

SWEPT = ("d_model", "num_layers", "num_heads", "d_ff")
"""The ``model`` fields of a trial's point (``num_kv_heads`` is fixed to null for all)."""


def sweep_available() -> bool:
    return importlib.util.find_spec("cs336_lm.sweep") is not None


def point(run: PlannedRun) -> dict[str, Any]:
    """``{"model.d_model": 64, …, "train.max_steps": 418}``: the trial of ``run``."""
    return {**{f"model.{k}": run.shape[k] for k in SWEPT}, "train.max_steps": run.steps}


def fixed_overrides(study: Study) -> list[str]:
    return [*study.overrides, "model.num_kv_heads=null", *RUN_SETTINGS]


def sweep_plan(study: Study):
    """The ``SweepPlan`` of the study (every point checked against the config schema)."""
    from cs336_lm.sweep import SweepPlan

    return SweepPlan.from_points(study.config_path, [point(r) for r in study.runs], fixed=fixed_overrides(study))


def trial_dir(study: Study, run: PlannedRun) -> Path:
    from cs336_lm.sweep import trial_name

    return study.root / trial_name(point(run))


def describe_next_step(study: Study) -> str:
    """What ``lm-scaling plan`` prints after writing the study."""
    where = f"lm-sweep trials in {study.root}/<trial name>" if study.layout == "sweep" else f"{study.root}/runs/"
    return f"train the {len(study.runs)} runs ({where}) with: lm-scaling run {study.root}"


def run_study(study: Study, workers: int | None = None, storage: str | None = None) -> list[str]:
    """Train (or resume) every run that has not finished; the names of those still unfinished afterwards."""
    study.base_config()  # the config file still gives the planned config
    if study.layout == "sweep":
        from cs336_lm.sweep import run_sweep

        run_sweep(sweep_plan(study), study.root, storage=storage, workers=workers)
    else:
        done = read_results(study).finished
        for run in study.runs:
            if run.name not in done:
                train_run(study, run)
    results = read_results(study)
    return results.missing + results.diverged
