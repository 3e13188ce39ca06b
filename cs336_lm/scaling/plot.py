"""The IsoFLOP figure of ``lm-scaling fit``, in the style of ``cs336_lm.training.plot`` (one colour per budget,
constrained layout, light grid, written atomically).

Left: each budget's final validation losses against N (log scale) with its fitted parabola, its minimum marked by
a star. Then N_opt, D_opt and L_opt against C, the per-budget minima as points, the fitted power law as a
line across the fitted budgets and up to the prediction budget (when there is one), and the bootstrap interval
of the prediction as an error bar. A verify run, when given, is a black cross on the IsoFLOP and the loss panels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cs336_lm.fileio import check_writable
from cs336_lm.training.plot import _import_matplotlib, save_png

if TYPE_CHECKING:
    from cs336_lm.scaling.report import StudyFit


def make_figure(result: StudyFit, verified: tuple[float, float] | None = None):
    """The four panels (module docstring); ``verified`` is a (N, loss) point to mark."""
    figure_cls, ticker = _import_matplotlib()
    fig = figure_cls(figsize=(20, 4.8), layout="constrained")
    ax_iso, ax_n, ax_d, ax_l = fig.subplots(1, 4)
    laws = result.laws
    for i, f in enumerate(laws.budgets):
        color = f"C{i % 10}"
        runs = [r for r in result.runs if r.budget == f.budget]
        n = np.array([r.params for r in runs])
        ax_iso.plot(n, [r.loss for r in runs], "o", color=color, ms=5, label=f"C = {f.budget:.3g}")
        xs = np.linspace(math.log(n.min()) - 0.2, math.log(n.max()) + 0.2, 100)
        ax_iso.plot(np.exp(xs), f.parabola(xs), color=color, lw=1.2)
        ax_iso.plot([f.n_opt], [f.l_opt], "*", color=color, ms=12, mec="black", mew=0.6)
    if verified is not None:
        ax_iso.plot([verified[0]], [verified[1]], "X", color="black", ms=9, label="verify run")
    ax_iso.set(xscale="log", xlabel="non-embedding parameters N", ylabel="final validation loss (nats)",
               title="IsoFLOP curves")  # fmt: skip
    budgets = np.array([f.budget for f in laws.budgets])
    upper = max(budgets.max(), result.predict_at or 0)
    cs = np.geomspace(budgets.min() / 1.3, upper * 1.3, 50)
    prediction = result.prediction()
    for ax, law, values, key, label in (
        (ax_n, laws.n_opt, [f.n_opt for f in laws.budgets], "n", "N_opt"),
        (ax_d, laws.d_opt, [f.d_opt for f in laws.budgets], "d", "D_opt"),
    ):
        ax.plot(budgets, values, "o", color="C0", ms=6, label=f"{label} per budget")
        ax.plot(cs, law(cs), color="C0", lw=1.2, label=f"{label} = {law.coef:.3g} C^{law.exponent:.3f}")
        if prediction is not None:
            low, high = prediction[f"{key}_interval"]
            mid = prediction[f"{key}_opt"]
            ax.errorbar([prediction["budget"]], [mid], yerr=[[mid - low], [high - mid]], fmt="s", color="C3",
                        capsize=4, label=f"prediction ({result.confidence:.0%})")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="compute budget C (FLOPs)", ylabel=label, title=f"{label} vs C")
    ax_l.plot(budgets, [f.l_opt for f in laws.budgets], "o", color="C0", ms=6, label="L_opt per budget")
    loss_law = laws.l_opt
    ax_l.plot(
        cs,
        loss_law(cs),
        color="C0",
        lw=1.2,
        label=f"L_opt = {loss_law.floor:.3g} + {loss_law.coef:.3g} (C/{loss_law.scale:.2g})^-{loss_law.alpha:.3f}",
    )
    if prediction is not None:
        low, high = prediction["loss_interval"]
        mid = prediction["loss"]
        ax_l.errorbar([prediction["budget"]], [mid], yerr=[[mid - low], [high - mid]], fmt="s", color="C3", capsize=4,
                      label=f"prediction ({result.confidence:.0%}, one run)")  # fmt: skip
        if verified is not None:
            ax_l.plot([prediction["budget"]], [verified[1]], "X", color="black", ms=9, label="verify run")
    ax_l.set(xscale="log", xlabel="compute budget C (FLOPs)", ylabel="loss (nats)", title="L_opt vs C")
    for ax in (ax_n, ax_d):
        ax.yaxis.set_major_formatter(ticker.EngFormatter())
        ax.yaxis.set_minor_formatter(ticker.EngFormatter())  # a span under a decade has few major ticks
    for ax in (ax_n, ax_d, ax_l):
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in (ax_iso, ax_n, ax_d, ax_l):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    return fig


def plot_fit(result: StudyFit, out: Path, verified: tuple[float, float] | None = None) -> Path:
    """Draw ``result`` into the PNG ``out`` (atomically); return its path."""
    check_writable(out)
    return save_png(make_figure(result, verified), out)
