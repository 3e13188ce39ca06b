"""The fits of an IsoFLOP study, with NumPy only: least squares written out, and a bootstrap over the runs.

Per budget C (Hoffmann et al. 2022, approach 2): the final validation losses against x = ln N are fitted with a
parabola L(x) = c0 + c1·x + c2·x²; its vertex x* = −c1 / (2·c2) gives N_opt = e^x*, and L_opt = L(x*). A budget
whose parabola opens downwards (c2 ≤ 0) has no minimum, and one whose vertex lies outside the sizes it was fitted
on is an extrapolation the runs do not support: both are a ``DataError`` (plan sizes on both sides of the optimum).
D_opt is read off the runs' own tokens: ln D is fitted as a parabola in ln N through the budget's runs (at a fixed
budget D is a smooth function of N, C / flops_per_token(N)) and evaluated at x*, so D_opt spends C under the same
exact FLOP count the plan used.

Across budgets: N_opt = k_N·C^a and D_opt = k_D·C^b are straight lines in log–log space, fitted by least squares
on the logs (``fit_power_law``). The loss cannot fall as a pure power law for ever (text has an irreducible
entropy), so L_opt = E + A·C^(−α) with E ≥ 0 (``fit_loss_law``), as Hoffmann et al.'s L(N, D) = E + A/N^α + B/D^β
gives along the compute-optimal frontier; with only two budgets E is 0.

The bootstrap (``bootstrap``) redraws the runs of each budget with replacement and refits everything; the
intervals are the percentiles of the refitted values. A redraw with fewer than three distinct sizes in a budget, or
a parabola without a minimum among its sizes, is drawn again (``failed`` counts them).

The predicted loss for a new run at budget C gets a *prediction* interval, not only a confidence interval for the
fitted law: each bootstrap draw adds one residual of the per-budget parabolas (scaled by √(n / (n − 3)) for the
three fitted coefficients), so the interval covers one run's own noise (its seed, the evaluation windows) too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cs336_lm.errors import DataError

Values = Sequence[float] | np.ndarray
"""Numbers as a list or an array."""

MIN_RUNS = 3
"""Runs a budget needs for a parabola."""


def least_squares(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β minimising ‖design·β − y‖², from the normal equations solved through a QR factorisation (stabler than
    inverting designᵀ·design). ``design`` (n, p) with n ≥ p and full column rank."""
    q, r = np.linalg.qr(design)  # design = q·r, q (n, p) orthonormal columns, r (p, p) upper triangular
    return np.linalg.solve(r, q.T @ y)


def polyfit(x: Values, y: Values, degree: int) -> np.ndarray:
    """Coefficients c0…c_degree (lowest first) of the least-squares polynomial through (x, y)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    design = np.stack([xs**k for k in range(degree + 1)], axis=1)  # (n, degree + 1)
    return least_squares(design, ys)


@dataclass(frozen=True)
class Parabola:
    """y = c0 + c1·x + c2·x²."""

    c0: float
    c1: float
    c2: float

    @property
    def vertex(self) -> tuple[float, float]:
        """(x*, y*) of the minimum (c2 > 0) or maximum."""
        x = -self.c1 / (2 * self.c2)
        return x, self(x)

    def __call__(self, x):
        return self.c0 + self.c1 * x + self.c2 * x * x


def fit_parabola(x: Values, y: Values) -> Parabola:
    if len(set(x)) < 3:
        raise DataError(f"a parabola needs three distinct x values, got {len(set(x))}")
    return Parabola(*map(float, polyfit(x, y, 2)))


@dataclass(frozen=True)
class PowerLaw:
    """y = coef · x^exponent."""

    coef: float
    exponent: float

    def __call__(self, x):
        return self.coef * np.power(x, self.exponent)


def fit_power_law(x: Values, y: Values) -> PowerLaw:
    """Least squares of ln y = ln coef + exponent · ln x; x and y must be > 0, with two distinct x at least."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    if np.any(xs <= 0) or np.any(ys <= 0):
        raise DataError("a power law needs positive values")
    if len(set(xs.tolist())) < 2:
        raise DataError("a power law needs at least two distinct x values (two budgets)")
    log_coef, exponent = polyfit(np.log(xs), np.log(ys), 1)
    return PowerLaw(float(math.exp(log_coef)), float(exponent))


@dataclass(frozen=True)
class LossLaw:
    """y = floor + coef · (x / scale)^(−alpha): a power law that levels off at an irreducible loss ``floor``."""

    floor: float
    coef: float
    alpha: float
    scale: float

    def __call__(self, x):
        return self.floor + self.coef * np.power(np.asarray(x, float) / self.scale, -self.alpha)


def fit_loss_law(x: Values, y: Values, alphas: tuple[float, float] = (1e-3, 3.0)) -> LossLaw:
    """Least squares of y = E + A·(x/s)^(−α) with E ≥ 0, A > 0 (s the geometric mean of x, for conditioning).

    For a given α the model is linear in (E, A): solved exactly (or with E = 0 when the free solution has E < 0).
    α itself is found by a grid over ``alphas`` in log scale and a golden-section search between the best grid
    point's neighbours. With two distinct x there is no floor to find: E = 0, the line through both points in
    log–log space."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    scale = float(np.exp(np.log(xs).mean()))
    if len(set(xs.tolist())) < 3:
        law = fit_power_law(xs, ys)
        return LossLaw(0.0, float(law(scale)), -law.exponent, scale)

    def solve(alpha: float) -> tuple[float, float, float]:
        t = (xs / scale) ** -alpha
        floor, coef = polyfit(t, ys, 1)
        if floor < 0:
            floor, coef = 0.0, float(t @ ys / (t @ t))
        return float(np.sum((floor + coef * t - ys) ** 2)), float(floor), float(coef)

    grid = np.geomspace(*alphas, 241)
    errors = [solve(a)[0] for a in grid]
    best = int(np.argmin(errors))
    low, high = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, grid.size - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):  # golden section on ln α
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if solve(math.exp(a))[0] <= solve(math.exp(b))[0]:
            high = b
        else:
            low = a
    alpha = math.exp((low + high) / 2)
    _, floor, coef = solve(alpha)
    if coef <= 0:
        raise DataError("the losses do not fall with compute; no loss law to fit")
    return LossLaw(floor, coef, alpha, scale)


@dataclass(frozen=True)
class Run:
    """One finished run: its budget, non-embedding parameters N, tokens D and final validation loss."""

    name: str
    budget: float
    params: float
    tokens: float
    loss: float


@dataclass(frozen=True)
class BudgetFit:
    budget: float
    parabola: Parabola
    """Loss against ln N."""
    n_opt: float
    d_opt: float
    l_opt: float
    residuals: tuple[float, ...]


def fit_budget(runs: Sequence[Run]) -> BudgetFit:
    """The IsoFLOP parabola of one budget's runs and its minimum (module docstring)."""
    budget = runs[0].budget
    x = [math.log(r.params) for r in runs]
    if len(set(x)) < MIN_RUNS:
        raise DataError(f"budget {budget:.3g} has {len(set(x))} distinct sizes; a parabola needs {MIN_RUNS}")
    parabola = fit_parabola(x, [r.loss for r in runs])
    if parabola.c2 <= 0:
        raise DataError(
            f"the losses of budget {budget:.3g} have no minimum in log N (the parabola opens downwards); "
            "plan sizes on both sides of the optimum"
        )
    x_opt, l_opt = parabola.vertex
    if not min(x) <= x_opt <= max(x):
        raise DataError(
            f"the minimum of budget {budget:.3g} lies outside its sizes (N_opt ≈ {math.exp(x_opt):.3g}, sizes "
            f"{min(r.params for r in runs):.3g} to {max(r.params for r in runs):.3g}); plan sizes on both sides of it"
        )
    d_curve = Parabola(*map(float, polyfit(x, [math.log(r.tokens) for r in runs], 2)))
    residuals = tuple(r.loss - parabola(xi) for r, xi in zip(runs, x, strict=True))
    return BudgetFit(budget, parabola, math.exp(x_opt), math.exp(d_curve(x_opt)), l_opt, residuals)


@dataclass(frozen=True)
class Laws:
    """The three power laws in C and the per-budget fits they came from."""

    budgets: tuple[BudgetFit, ...]
    n_opt: PowerLaw
    d_opt: PowerLaw
    l_opt: LossLaw

    def predict(self, budget: float) -> tuple[float, float, float]:
        """(N_opt, D_opt, L_opt) at ``budget``."""
        return float(self.n_opt(budget)), float(self.d_opt(budget)), float(self.l_opt(budget))


def group(runs: Sequence[Run]) -> dict[float, list[Run]]:
    """Runs by budget, budgets in increasing order."""
    by_budget: dict[float, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (r.budget, r.params)):
        by_budget.setdefault(r.budget, []).append(r)
    return by_budget


def fit_laws(runs: Sequence[Run]) -> Laws:
    """Every budget's parabola, then the power laws through their minima; two budgets at least."""
    fits = tuple(fit_budget(group_runs) for group_runs in group(runs).values())
    if len(fits) < 2:
        raise DataError(f"a scaling law needs at least two budgets with {MIN_RUNS} runs each, got {len(fits)}")
    c = [f.budget for f in fits]
    return Laws(
        fits,
        fit_power_law(c, [f.n_opt for f in fits]),
        fit_power_law(c, [f.d_opt for f in fits]),
        fit_loss_law(c, [f.l_opt for f in fits]),
    )


@dataclass
class Bootstrap:
    """Refitted values, one per successful resample."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    """L_opt = E + A·C^(−alpha)."""
    floor: list[float] = field(default_factory=list)
    """E, the irreducible loss of the fitted law."""
    n_pred: list[float] = field(default_factory=list)
    d_pred: list[float] = field(default_factory=list)
    l_pred: list[float] = field(default_factory=list)
    """The law's loss at the prediction budget plus one resampled residual (module docstring)."""
    failed: int = 0

    def interval(self, name: str, confidence: float) -> tuple[float, float]:
        values = np.asarray(getattr(self, name))
        tail = (1 - confidence) / 2
        return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def bootstrap(
    runs: Sequence[Run], resamples: int, predict_at: float | None = None, seed: int = 0, max_tries: int = 50
) -> Bootstrap:
    """Refit on ``resamples`` redraws of the runs within each budget (module docstring). Up to ``max_tries`` ×
    ``resamples`` draws are tried; ``failed`` counts those without a fit."""
    rng = np.random.default_rng(seed)
    groups = list(group(runs).values())
    full = fit_laws(runs)
    residuals = np.concatenate(
        [np.asarray(f.residuals) * math.sqrt(len(f.residuals) / max(len(f.residuals) - 3, 1)) for f in full.budgets]
    )
    out = Bootstrap()
    for _ in range(max_tries * resamples):
        if len(out.a) == resamples:
            break
        drawn = [g[i] for g in groups for i in rng.integers(0, len(g), len(g))]
        try:
            laws = fit_laws(drawn)
        except (DataError, np.linalg.LinAlgError):
            out.failed += 1
            continue
        out.a.append(laws.n_opt.exponent)
        out.b.append(laws.d_opt.exponent)
        out.alpha.append(laws.l_opt.alpha)
        out.floor.append(laws.l_opt.floor)
        if predict_at is not None:
            n, d, loss = laws.predict(predict_at)
            out.n_pred.append(n)
            out.d_pred.append(d)
            out.l_pred.append(loss + float(rng.choice(residuals)))
    if len(out.a) < resamples // 2:
        raise DataError(f"only {len(out.a)} of {resamples} bootstrap resamples could be fitted; plan more sizes")
    return out
