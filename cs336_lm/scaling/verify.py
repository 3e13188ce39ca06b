"""``lm-scaling verify DIR --budget C``: the check a fitted law owes — train the run it calls compute-optimal at a
budget above every fitted one, and compare its loss with the prediction.

The fitted N_opt(C) becomes a shape by the plan's rule (``shape_for_params``; the nearest allowed shape, so its N
differs from N_opt by up to the rule's tolerance, where the IsoFLOP curve is flat), its steps spend C exactly as the
plan's runs do, and it trains into ``DIR/verify/NAME`` with the study's base config (resuming if it was started
before; a run that already finished is not trained again, its final loss is read back, so ``verify`` run twice
reports twice); the base config file must still give the config the study was planned with. The record
``DIR/verify.json`` holds the prediction with its interval, the measured final validation loss, their relative
difference and whether the loss fell inside the interval; the figure is redrawn with the run marked.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from cs336_lm.errors import ConfigError, DataError
from cs336_lm.fileio import atomic_write
from cs336_lm.scaling.plan import plan_run, tokens_per_step
from cs336_lm.scaling.report import PLOT_FILE, fit
from cs336_lm.scaling.shapes import describe, shape_for_params
from cs336_lm.scaling.study import RUN_SETTINGS, load_study
from cs336_lm.training.metrics import read_metrics

VERIFY_DIR = "verify"
VERIFY_FILE = "verify.json"


def verify(root: str | Path, budget: float, resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> str:
    """Train the predicted optimum at ``budget`` and report prediction against measurement (module docstring)."""
    from cs336_lm.config import load_config
    from cs336_lm.scaling.plot import plot_fit
    from cs336_lm.training import train

    root = Path(root)
    largest = max(load_study(root).budgets)
    if not (math.isfinite(budget) and budget > largest):
        raise ConfigError(f"--budget {budget:.3g} must be a finite budget above every fitted one (the largest is "
                          f"{largest:.3g}): verify checks an extrapolation")  # fmt: skip
    result = fit(root, budget, resamples, confidence, seed)
    study = result.study
    prediction = result.prediction()
    assert prediction is not None
    base_cfg = study.base_config()
    base = base_cfg.model.args
    t = base_cfg.train
    shape = shape_for_params(prediction["n_opt"], base)
    run = plan_run(base, shape, budget, tokens_per_step(t.batch_size, t.grad_accum_steps, base.context_length))
    run = replace(run, name=f"verify-{run.name}")
    out_dir = root / VERIFY_DIR / run.name
    overrides = [*study.overrides, *run.overrides(), f"train.out_dir={out_dir}", *RUN_SETTINGS]
    measured = train(load_config(study.config_path, overrides)).val_loss
    if measured is None:  # a run finished before: its last evaluation, from its metrics
        records = read_metrics(out_dir / "metrics.jsonl")
        final = [r["val_loss"] for r in records if r.get("step") == run.steps and "val_loss" in r]
        measured = final[-1] if final else None
    if measured is None:
        raise DataError(f"the verify run {out_dir} ended without a validation loss")
    low, high = prediction["loss_interval"]
    record = {
        "budget": budget,
        "run": run.to_dict(),
        "run_dir": str(out_dir),
        "prediction": prediction,
        "measured_loss": measured,
        "relative_error": (measured - prediction["loss"]) / prediction["loss"],
        "inside_interval": low <= measured <= high,
    }
    with atomic_write(root / VERIFY_FILE, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    figure = plot_fit(result, root / PLOT_FILE, verified=(run.params, measured))
    return "\n".join(
        [
            f"verify at C = {budget:.3g} ({budget / max(study.budgets):.3g}x the largest fitted budget):",
            f"  predicted N_opt {prediction['n_opt']:.4g} -> trained {describe(shape)} (N = {run.params:,}), "
            f"{run.steps} steps, {run.tokens:,} tokens",
            f"  predicted loss {prediction['loss']:.4f} [{low:.4f}, {high:.4f}] ({confidence:.0%} prediction interval)",
            f"  measured loss  {measured:.4f}: {record['relative_error']:+.2%} of the prediction, "
            f"{'inside' if record['inside_interval'] else 'OUTSIDE'} the interval",
            f"wrote {root / VERIFY_FILE} and {figure}",
        ]
    )
