"""Sweeps: grids and searches over config values, every trial an ordinary run directory, the record on Optuna.

The command is ``lm-sweep`` (``cs336_lm.cli.sweep``); the pieces, each in its own module:

- ``grammar``: ``key=value`` arguments → fixed overrides, grid axes (``key=a,b,c``) and search ranges
  (``loguniform(a,b)``, ``uniform(a,b)``, ``int(a,b)``, ``choice(a,b,…)``); grid points; readable, unique trial names.
- ``plan``: ``SweepPlan`` — the config, the axes, the seeds; every trial; validation of every point before any runs.
- ``study``: ``SweepStudy`` — the Optuna study (SQLite in ``DIR/study.db`` or any RDB URL) and the claims that let
  several workers and machines share it without running a trial twice.
- ``runner``: ``run_sweep`` — workers, one subprocess per trial (``trial``: ``lm-train``'s library path), SIGINT,
  divergence, failures, pruning.
- ``summary``: the table (``summary.csv``, ``summary.md``), seeds' mean ± std and the comparison with the best point.
- ``plot``: ``lm-plot DIR`` of a sweep: every trial's curve coloured by its swept value, and final loss per value.

The Python API, for tools that plan their own trials (e.g. a scaling study as a list of model shapes)::

    from cs336_lm.sweep import SweepPlan, run_sweep, read_summary

    plan = SweepPlan.from_args("configs/debug.yaml", ["optim.lr=1e-3,1e-2", "train.max_steps=300"], seeds=1)
    result = run_sweep(plan, "runs/lr", workers=1)      # resumable: the same call again runs only what is left
    for row in result.rows:                               # sorted by best validation loss
        print(row.name, row.status, row.metrics.get("best_val_loss"))
    keys, rows = read_summary("runs/lr")                  # later, from DIR/summary.csv

``SweepPlan.from_points(config, [{"model.d_model": 64, "train.max_steps": 600}, …], fixed=[…])`` is a sweep of
explicit points (trials that vary together, not as a product); ``run_sweep(..., storage="postgresql://…")`` shares
the study between machines.
"""

from pathlib import Path

from cs336_lm.sweep.grammar import Axis, parse_arguments, trial_name
from cs336_lm.sweep.plan import SweepPlan, Trial
from cs336_lm.sweep.runner import SweepResult, run_sweep
from cs336_lm.sweep.summary import SummaryRow, read_summary_csv


def read_summary(out_dir: str | Path) -> tuple[list[str], list[SummaryRow]]:
    """The swept keys and the rows of ``out_dir/summary.csv`` (the last ``run_sweep`` into it)."""
    return read_summary_csv(Path(out_dir) / "summary.csv")


__all__ = [
    "Axis",
    "SummaryRow",
    "SweepPlan",
    "SweepResult",
    "Trial",
    "parse_arguments",
    "read_summary",
    "run_sweep",
    "trial_name",
]
