"""Loss curves from run directories: read ``metrics.jsonl`` files and draw them into one PNG.

``load_curves(run_dir)`` turns a run's records into arrays — training loss and learning rate per logged step,
validation loss per evaluation, each with its step and token count — tolerating records that lack a field
(older runs, a torn last line). It also reads the JSON-lines file of ``lm-perplexity --all-checkpoints --out`` (one
``eval_loss`` per checkpoint). ``plot_runs`` draws several runs side by side: loss against steps, loss against
tokens, and the learning rate below; one colour per run, training solid, validation dashed, evaluations dotted
with square markers. matplotlib is an optional dependency (the ``plot`` extra); without it ``plot_runs`` raises one
clear ``LMError``.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_lm.errors import DataError, LMError
from cs336_lm.fileio import atomic_write, check_writable, output_directory
from cs336_lm.run import RunDir
from cs336_lm.training.metrics import read_metrics

SERIES_STYLES: dict[str, dict[str, Any]] = {
    "train": {"lw": 1.2},
    "val": {"ls": "--", "marker": "o", "ms": 3},
    "eval": {"ls": ":", "marker": "s", "ms": 4},
}
MISSING_MATPLOTLIB = "lm-plot needs matplotlib: pip install 'cs336_lm[plot]' (or pip install matplotlib)"


@dataclass
class Curves:
    """The plottable series of one run; ``*_tokens`` hold ``None`` where a record had no token count."""

    name: str
    train_steps: list[int] = field(default_factory=list)
    train_tokens: list[int | None] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr_steps: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_tokens: list[int | None] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_tokens: list[int | None] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)

    @property
    def has_tokens(self) -> bool:
        return any(t is not None for t in self.train_tokens + self.val_tokens + self.eval_tokens)


def curves_from_records(records: list[dict], name: str) -> Curves:
    """Sort records into series: ``{"step": 10, "tokens": 640, "loss": 3.2, "lr": 1e-3}`` adds one training point
    and one learning-rate point; ``{"step": 10, "val_loss": 3.4}`` adds one validation point; ``{"step": 10,
    "eval_loss": 3.5}`` (``lm-perplexity``) one evaluation point. Records without a step, and values that are not
    numbers, are skipped.
    """
    c = Curves(name)
    for r in records:
        if not _is_number(r.get("step")) or not math.isfinite(r["step"]):
            continue
        step = int(r["step"])
        tokens = r.get("tokens") if _is_number(r.get("tokens")) else None
        for series, key in (("train", "loss"), ("val", "val_loss"), ("eval", "eval_loss")):
            if _is_number(r.get(key)):
                getattr(c, f"{series}_steps").append(step)
                getattr(c, f"{series}_tokens").append(tokens)
                getattr(c, f"{series}_loss").append(float(r[key]))
        if _is_number(r.get("lr")):
            c.lr_steps.append(step)
            c.lr.append(float(r["lr"]))
    return c


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_curves(run_dir: str | os.PathLike) -> Curves:
    """Curves of the run in ``run_dir`` (its ``metrics.jsonl``), named after the directory; or of a JSON-lines file
    (a ``metrics.jsonl``, named after its directory, or an ``lm-perplexity --out`` file, named ``RUN/FILE``). A line of
    the file that is not a JSON object (other than a torn last line) is a ``DataError`` naming it."""
    run_dir = Path(run_dir)
    path = RunDir(run_dir).metrics_file if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise DataError(f"no metrics.jsonl in {run_dir}")
    if run_dir.is_dir() or path.name == RunDir(path.parent).metrics_file.name:
        name = path.parent.name
    else:
        name = f"{path.parent.name}/{path.stem}"
    curves = curves_from_records(read_metrics(path), name)
    if not (curves.train_loss or curves.val_loss or curves.eval_loss):
        raise DataError(f"{path} has no loss records to plot")
    return curves


def _import_matplotlib():
    try:
        from matplotlib import ticker
        from matplotlib.figure import Figure
    except ImportError as e:
        raise LMError(MISSING_MATPLOTLIB) from e
    return Figure, ticker


def make_figure(runs: list[Curves], title: str | None = None):
    """A matplotlib Figure: loss vs steps (top left), loss vs tokens (top right), learning rate (bottom)."""
    figure_cls, ticker = _import_matplotlib()
    fig = figure_cls(figsize=(12, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(2, 1))
    ax_steps, ax_tokens, ax_lr = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        series = {
            "train": (run.train_steps, run.train_tokens, run.train_loss),
            "val": (run.val_steps, run.val_tokens, run.val_loss),
            "eval": (run.eval_steps, run.eval_tokens, run.eval_loss),
        }
        for kind, (steps, tokens, loss) in series.items():
            if loss:  # an lm-perplexity file has no training series, a run no eval series
                style = {**SERIES_STYLES[kind], "color": color, "label": f"{run.name} {kind}"}
                ax_steps.plot(steps, loss, **style)
                _plot_known(ax_tokens, tokens, loss, **style)
        if run.lr:
            ax_lr.plot(run.lr_steps, run.lr, color=color, lw=1.2, label=run.name)
    ax_steps.set(xlabel="step", ylabel="cross-entropy loss (nats)", title="loss vs steps")
    ax_tokens.set(xlabel="tokens seen", ylabel="cross-entropy loss (nats)", title="loss vs tokens")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if not any(run.has_tokens for run in runs):
        ax_tokens.text(
            0.5, 0.5, "no token counts in metrics.jsonl", ha="center", va="center", transform=ax_tokens.transAxes
        )
    ax_tokens.xaxis.set_major_formatter(ticker.EngFormatter())  # 20000 -> "20 k"
    for ax in (ax_steps, ax_tokens, ax_lr):
        if ax is not ax_tokens:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _plot_known(ax, xs: list, ys: list[float], **style) -> None:
    """Plot only the points whose x is known (records without a token count are left out)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None]
    if pairs:
        ax.plot([x for x, _ in pairs], [y for _, y in pairs], **style)


def plot_runs(run_dirs: list[str | os.PathLike], out: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the runs in ``run_dirs`` into the PNG ``out`` (written atomically, its directory created as needed and
    removed again if writing fails); return its path. An ``out`` that cannot be written is refused first."""
    out = Path(out)
    check_writable(out)
    runs = [load_curves(d) for d in run_dirs]
    return save_png(make_figure(runs, title), out)


def save_png(fig: Any, out: Path) -> Path:
    """Write the matplotlib figure ``fig`` to the PNG ``out`` atomically, its directory created as needed (and
    removed again if writing fails); return ``out``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    with output_directory(out.parent), atomic_write(out, "wb") as f:
        f.write(buf.getvalue())
    return out
