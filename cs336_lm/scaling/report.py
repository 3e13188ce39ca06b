"""``lm-scaling fit``: a study's finished runs → the fits of ``cs336_lm.scaling.fit`` → a printed report, a JSON
record (``DIR/fit.json``) and the figure (``DIR/isoflops.png``).

Runs that are missing (not trained, or not to the end) or diverged are left out with one warning each; a budget
left with fewer than three runs is refused (``DataError``), as is a directory whose runs were trained with another
config (``cs336_lm.scaling.study.read_results``).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from cs336_lm.errors import ConfigError, DataError
from cs336_lm.fileio import atomic_write
from cs336_lm.scaling.fit import MIN_RUNS, Bootstrap, Laws, Run, bootstrap, fit_laws
from cs336_lm.scaling.study import Study, load_study, read_results

FIT_FILE = "fit.json"
PLOT_FILE = "isoflops.png"


@dataclass
class StudyFit:
    study: Study
    runs: list[Run]
    laws: Laws
    boot: Bootstrap
    confidence: float
    predict_at: float | None

    def prediction(self) -> dict | None:
        """N_opt, D_opt and L at ``predict_at``, each with its interval (``[low, high]``)."""
        if self.predict_at is None:
            return None
        n, d, loss = self.laws.predict(self.predict_at)
        ci = self.boot.interval
        return {
            "budget": self.predict_at,
            "n_opt": n,
            "n_interval": ci("n_pred", self.confidence),
            "d_opt": d,
            "d_interval": ci("d_pred", self.confidence),
            "loss": loss,
            "loss_interval": ci("l_pred", self.confidence),
        }

    def to_dict(self) -> dict:
        ci = self.boot.interval
        return {
            "runs": [vars(r) for r in self.runs],
            "budgets": [
                {"budget": f.budget, "n_opt": f.n_opt, "d_opt": f.d_opt, "l_opt": f.l_opt, "parabola": vars(f.parabola)}
                for f in self.laws.budgets
            ],
            "laws": {
                "n_opt": {**vars(self.laws.n_opt), "interval": ci("a", self.confidence)},
                "d_opt": {**vars(self.laws.d_opt), "interval": ci("b", self.confidence)},
                "l_opt": {
                    **vars(self.laws.l_opt),
                    "interval": ci("alpha", self.confidence),
                    "floor_interval": ci("floor", self.confidence),
                },
            },
            "confidence": self.confidence,
            "resamples": len(self.boot.a),
            "failed_resamples": self.boot.failed,
            "prediction": self.prediction(),
        }


def finished_runs(study: Study) -> list[Run]:
    """The study's finished runs; warnings for the others; a budget with fewer than three is a ``DataError``."""
    results = read_results(study)
    for name in results.missing:
        warnings.warn(f"run {name} has no final validation loss (not trained to its last step); left out", stacklevel=2)
    for name in results.diverged:
        warnings.warn(f"run {name} diverged (a non-finite loss, or worse than uniform); left out", stacklevel=2)
    runs = [
        Run(r.name, r.budget, r.params, r.tokens, results.finished[r.name])
        for r in study.runs
        if r.name in results.finished
    ]
    for budget in study.budgets:
        count = sum(r.budget == budget for r in runs)
        if count < MIN_RUNS:
            raise DataError(
                f"budget {budget:.3g} has {count} finished run(s) in {study.root}; a fit needs {MIN_RUNS} per budget"
            )
    return runs


def fit(root: str | Path, predict_at: float | None = None, resamples: int = 1000, confidence: float = 0.95,
        seed: int = 0) -> StudyFit:  # fmt: skip
    if resamples < 10:
        raise ConfigError(f"--bootstrap must be at least 10, got {resamples}")
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence must be in (0, 1), got {confidence}")
    if predict_at is not None and not (math.isfinite(predict_at) and predict_at > 0):
        raise ConfigError(f"--predict must be a finite, positive budget in FLOPs, got {predict_at}")
    study = load_study(root)
    runs = finished_runs(study)
    laws = fit_laws(runs)
    return StudyFit(study, runs, laws, bootstrap(runs, resamples, predict_at, seed), confidence, predict_at)


def describe(result: StudyFit) -> str:
    """The printed report: per-budget minima, the exponents with intervals, the prediction."""
    pct = f"{result.confidence:.0%}"
    lines = [f"{'budget':>10} {'runs':>5} {'N_opt':>10} {'D_opt':>10} {'D/N':>6} {'L_opt':>7}"]
    for f in result.laws.budgets:
        count = sum(r.budget == f.budget for r in result.runs)
        lines.append(
            f"{f.budget:>10.3g} {count:>5} {f.n_opt:>10.4g} {f.d_opt:>10.4g} {f.d_opt / f.n_opt:>6.1f} {f.l_opt:>7.4f}"
        )
    ci, conf = result.boot.interval, result.confidence
    laws = result.laws
    lines += [
        "",
        f"fits over {len(result.runs)} runs; {pct} intervals from {len(result.boot.a)} bootstrap resamples of the runs",
        f"  N_opt = {laws.n_opt.coef:.4g} * C^a      a = {laws.n_opt.exponent:.3f}  [{_pair(ci('a', conf))}]",
        f"  D_opt = {laws.d_opt.coef:.4g} * C^b      b = {laws.d_opt.exponent:.3f}  [{_pair(ci('b', conf))}]",
        f"  L_opt = E + A * (C / {laws.l_opt.scale:.3g})^-alpha   alpha = {laws.l_opt.alpha:.3f}  "
        f"[{_pair(ci('alpha', conf))}]",
        f"      E = {laws.l_opt.floor:.4f}  [{_pair(ci('floor', conf), 4)}]   A = {laws.l_opt.coef:.4f}",
    ]
    p = result.prediction()
    if p is not None:
        lines += [
            f"at C = {p['budget']:.3g}:",
            f"  N_opt = {p['n_opt']:.4g}  [{_pair(p['n_interval'], 4, 'g')}]",
            f"  D_opt = {p['d_opt']:.4g}  [{_pair(p['d_interval'], 4, 'g')}]",
            f"  loss  = {p['loss']:.4f}  [{_pair(p['loss_interval'], 4)}] ({pct} prediction interval for one run)",
        ]
    return "\n".join(lines)


def _pair(pair: tuple[float, float] | list[float], digits: int = 3, kind: str = "f") -> str:
    return f"{pair[0]:.{digits}{kind}}, {pair[1]:.{digits}{kind}}"


def fit_study(root: str | Path, predict_at: float | None = None, resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0, plot: str | Path | None = None) -> str:  # fmt: skip
    """``lm-scaling fit``: fit, write ``fit.json`` and the figure into the study, return the report."""
    from cs336_lm.scaling.plot import plot_fit

    result = fit(root, predict_at, resamples, confidence, seed)
    path = Path(root) / FIT_FILE
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(result.to_dict(), f, indent=1)
        f.write("\n")
    figure = plot_fit(result, Path(plot) if plot else Path(root) / PLOT_FILE)
    return f"{describe(result)}\nwrote {path} and {figure}"
