"""The fits recover the parameters of synthetic data, and agree with independent references: NumPy's own
``polyfit`` (an SVD-based solver) for the least squares, a per-point closed form for the vertex, and the true
values that generated noisy data."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_lm.errors import DataError
from cs336_lm.scaling.fit import (
    Run,
    bootstrap,
    fit_budget,
    fit_laws,
    fit_loss_law,
    fit_parabola,
    fit_power_law,
    polyfit,
)

finite = st.floats(-5, 5, allow_nan=False)


@given(coeffs=st.lists(finite, min_size=3, max_size=3), n=st.integers(4, 12), seed=st.integers(0, 2**16))
def test_polyfit_matches_numpys_solver(coeffs, n, seed):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(8, 16, n))
    x[1:] += np.arange(1, n) * 1e-3  # distinct
    y = np.polyval(coeffs[::-1], x) + rng.normal(0, 0.1, n)
    ours = polyfit(x, y, 2)
    reference = np.polynomial.polynomial.polyfit(x, y, 2)
    assert np.allclose(ours, reference, rtol=1e-6, atol=1e-6 * (1 + np.abs(reference).max()))


@settings(max_examples=60)
@given(
    x_opt=st.floats(9, 15),
    l_opt=st.floats(1, 5),
    curvature=st.floats(0.02, 0.5),
    noise=st.floats(0, 0.01),
    seed=st.integers(0, 2**16),
)
def test_parabola_recovers_the_minimum_of_noisy_data(x_opt, l_opt, curvature, noise, seed):
    rng = np.random.default_rng(seed)
    x = x_opt + np.linspace(-1.5, 1.5, 7)
    y = l_opt + curvature * (x - x_opt) ** 2 + rng.normal(0, noise, x.size)
    fitted = fit_parabola(x.tolist(), y.tolist())
    x_hat, l_hat = fitted.vertex
    # noise of σ moves the vertex by about σ / (curvature · spread²) in x
    assert abs(x_hat - x_opt) <= 0.05 + 10 * noise / curvature
    assert abs(l_hat - l_opt) <= 0.001 + 4 * noise
    assert fitted.c2 == pytest.approx(curvature, abs=0.001 + 10 * noise)


@settings(max_examples=60)
@given(coef=st.floats(1e-3, 1e3), exponent=st.floats(-1, 1), noise=st.floats(0, 0.05), seed=st.integers(0, 2**16))
def test_power_law_recovers_coefficient_and_exponent(coef, exponent, noise, seed):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e10, 1e14, 6)
    y = coef * x**exponent * np.exp(rng.normal(0, noise, x.size))
    law = fit_power_law(x.tolist(), y.tolist())
    # log-space noise σ over ln x spanning 9.2: the slope's error is about σ / 3.6
    assert law.exponent == pytest.approx(exponent, abs=1e-9 + 2 * noise)
    assert law(1e12) == pytest.approx(coef * 1e12**exponent, rel=1e-9 + 6 * noise)


@settings(max_examples=40, deadline=None)
@given(
    floor=st.floats(0.2, 3),
    coef=st.floats(0.2, 5),
    alpha=st.floats(0.1, 1.5),
    noise=st.floats(0, 0.002),
    seed=st.integers(0, 2**16),
)
def test_loss_law_recovers_floor_and_exponent(floor, coef, alpha, noise, seed):
    rng = np.random.default_rng(seed)
    c = np.geomspace(1e11, 1e14, 7)
    y = floor + coef * (c / 1e12) ** -alpha + rng.normal(0, noise, c.size)
    law = fit_loss_law(c.tolist(), y.tolist())
    truth = floor + coef * (4e14 / 1e12) ** -alpha
    assert law(4e14) == pytest.approx(truth, abs=1e-4 + 60 * noise)  # 4x beyond the last budget
    if noise == 0:
        assert law.alpha == pytest.approx(alpha, rel=1e-3) and law.floor == pytest.approx(floor, abs=1e-3)


def synthetic_study(a=0.5, alpha=0.05, curvature=0.08, noise=0.0, seed=0, budgets=(1e12, 3e12, 1e13, 3e13)):
    """Runs whose losses follow L = 2·C^(−alpha) + curvature·ln(N/N_opt)², N_opt = 0.1·C^a, D = C / (6N)."""
    rng = np.random.default_rng(seed)
    runs = []
    for c in budgets:
        n_opt = 0.1 * c**a
        for k in range(5):
            n = n_opt * 16 ** (k / 4 - 0.5) * math.exp(rng.uniform(-0.1, 0.1))
            loss = 2 * c**-alpha + curvature * math.log(n / n_opt) ** 2 + rng.normal(0, noise)
            runs.append(Run(f"{c:g}-{k}", c, n, c / (6 * n), loss))
    return runs


@pytest.mark.parametrize("a", [0.3, 0.5, 0.7])
def test_noiseless_study_gives_its_exponents_back(a):
    laws = fit_laws(synthetic_study(a=a))
    assert laws.n_opt.exponent == pytest.approx(a, abs=1e-6)
    assert laws.d_opt.exponent == pytest.approx(1 - a, abs=1e-6)  # D = C / (6N) exactly here
    assert laws.l_opt.alpha == pytest.approx(0.05, abs=1e-4) and laws.l_opt.floor == pytest.approx(0, abs=1e-4)
    n, d, loss = laws.predict(1e14)
    assert n == pytest.approx(0.1 * 1e14**a, rel=1e-5)
    assert 6 * n * d == pytest.approx(1e14, rel=1e-5)
    assert loss == pytest.approx(2 * 1e14**-0.05, rel=1e-4)


def test_bootstrap_intervals_cover_the_truth_about_as_often_as_they_say():
    covered = {"a": 0, "b": 0, "alpha": 0, "l_pred": 0}
    trials = 12
    for seed in range(trials):
        runs = synthetic_study(noise=0.01, seed=seed)
        boot = bootstrap(runs, 100, predict_at=1e14, seed=seed)
        new_run = 2 * 1e14**-0.05 + np.random.default_rng(seed).normal(0, 0.01)  # one more run, at C = 1e14
        truth = {"a": 0.5, "b": 0.5, "alpha": 0.05, "l_pred": new_run}
        for name, value in truth.items():
            low, high = boot.interval(name, 0.9)
            covered[name] += low <= value <= high
    # a 90% interval from a bootstrap of 5 runs per budget is optimistic, but not wildly so
    for name, count in covered.items():
        assert count >= 0.6 * trials, (name, count)


def test_a_budget_without_a_minimum_is_refused():
    runs = [Run(str(k), 1e12, 1e5 * 2**k, 1e6, 3.0 - 0.1 * k**2) for k in range(5)]  # concave
    with pytest.raises(DataError, match="no minimum"):
        fit_budget(runs)


def test_two_runs_are_not_a_parabola():
    with pytest.raises(DataError, match="distinct sizes"):
        fit_budget([Run("a", 1e12, 1e5, 1e6, 3.0), Run("b", 1e12, 2e5, 5e5, 2.9), Run("c", 1e12, 2e5, 5e5, 2.9)])


def test_one_budget_is_not_a_law():
    with pytest.raises(DataError, match="two budgets"):
        fit_laws(synthetic_study(budgets=(1e12,)))
