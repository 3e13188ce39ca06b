"""``lm-plot DIR`` of a sweep: every trial's validation loss in one figure, and the final loss against each swept value.

``plot_sweep(sweep_dir, out)`` reads ``summary.csv`` (the trials, their swept values and status) and each trial's
``metrics.jsonl``, and writes two PNGs: ``out`` — validation loss (training loss, faint, beside it) against tokens and
against wall time, one line per trial, coloured by the swept value (a colour scale on a log axis for a numeric axis
spanning a factor of 10 or more, a linear one for other numbers, one colour per value otherwise; with several axes
the first numeric one colours and the line style tells the rest apart); and ``out``'s ``-values`` sibling
(``sweep.png`` → ``sweep-values.png``) — final validation loss against each swept value, one panel per axis, with
the points of other axes' values joined by lines and diverged trials marked with an ``x`` at the top.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from cs336_lm.errors import DataError, LMError
from cs336_lm.fileio import atomic_write, check_writable, output_directory
from cs336_lm.sweep.summary import SummaryRow, read_summary_csv
from cs336_lm.training.plot import MISSING_MATPLOTLIB, load_curves

LINE_STYLES = ("-", "--", ":", "-.")


def _import_matplotlib():
    try:
        from matplotlib import ticker
        from matplotlib.figure import Figure
    except ImportError as e:
        raise LMError(MISSING_MATPLOTLIB) from e
    return Figure, ticker


def is_sweep(path: Path) -> bool:
    """A directory that ``lm-sweep`` wrote (its ``sweep.json``)."""
    return path.is_dir() and (path / "sweep.json").is_file()


def values_path(out: Path) -> Path:
    """``sweep.png`` → ``sweep-values.png``."""
    return out.with_name(f"{out.stem}-values{out.suffix or '.png'}")


def plot_sweep(sweep_dir: Path, out: Path, title: str | None = None) -> list[Path]:
    """Write the two figures of the sweep in ``sweep_dir``; return their paths."""
    summary = sweep_dir / "summary.csv"
    if not summary.is_file():
        raise DataError(f"no summary.csv in {sweep_dir}: run lm-sweep into it first")
    keys, rows = read_summary_csv(summary)
    rows = [r for r in rows if (sweep_dir / r.name / "metrics.jsonl").is_file()]
    if not rows:
        raise DataError(f"no trial of {sweep_dir} has metrics to plot yet")
    second = values_path(out)
    check_writable(out)
    check_writable(second)
    curves = _figure_curves(sweep_dir, keys, rows, title)
    values = _figure_values(keys, rows, title)
    for path, fig in ((out, curves), (second, values)):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        with output_directory(path.parent), atomic_write(path, "wb") as f:
            f.write(buf.getvalue())
    return [out, second]


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _colour_key(keys: list[str], rows: list[SummaryRow]) -> str | None:
    """The swept key that colours the lines: the first numeric one with several values, else the first one."""
    varied = [k for k in keys if len({r.values.get(k) for r in rows}) > 1]
    numeric = [k for k in varied if _numeric([r.values.get(k) for r in rows])]
    chosen = numeric or varied
    return chosen[0] if chosen else None


def _colours(key: str | None, rows: list[SummaryRow]):
    """(value → colour, a colour bar's mappable or None)."""
    from matplotlib import cm, colors

    values: list[Any] = sorted({r.values.get(key) for r in rows}, key=str) if key else [None]
    if key and _numeric(values) and len(values) > 1:
        low, high = float(min(values)), float(max(values))
        log = low > 0 and high / low >= 10
        norm = colors.LogNorm(low, high) if log else colors.Normalize(low, high)
        mappable = cm.ScalarMappable(norm=norm, cmap="viridis")
        return (lambda v: mappable.to_rgba(v)), mappable
    table = {v: f"C{i % 10}" for i, v in enumerate(values)}
    return (lambda v: table[v]), None


def _figure_curves(sweep_dir: Path, keys: list[str], rows: list[SummaryRow], title: str | None):
    figure_cls, ticker = _import_matplotlib()
    fig = figure_cls(figsize=(13, 5.5), layout="constrained")
    ax_tokens, ax_time = fig.subplots(1, 2)
    key = _colour_key(keys, rows)
    colour_of, mappable = _colours(key, rows)
    colour_key = key or ""
    others = [k for k in keys if k != key and len({r.values.get(k) for r in rows}) > 1]
    style_of = _styles(others, rows)
    for r in rows:
        c = load_curves(sweep_dir / r.name)
        colour, ls = colour_of(r.values.get(colour_key)), style_of(r)
        label = f"{r.name}{' (diverged)' if r.status == 'diverged' else ''}"
        times = _wall_times(sweep_dir / r.name)
        for ax, xs_val, xs_train in ((ax_tokens, c.val_tokens, c.train_tokens), (ax_time, times[1], times[0])):
            _plot(ax, xs_train, c.train_loss, color=colour, ls=ls, lw=0.6, alpha=0.35)
            _plot(ax, xs_val, c.val_loss, color=colour, ls=ls, lw=1.6, marker="o", ms=2.5, label=label)
    ax_tokens.set(xlabel="tokens seen", ylabel="loss (nats): validation bold, training faint", title="loss vs tokens")
    ax_time.set(xlabel="wall time (s)", ylabel="loss (nats)", title="loss vs wall time")
    ax_tokens.xaxis.set_major_formatter(ticker.EngFormatter())
    _clip_to_finite(ax_tokens, rows, sweep_dir)
    _clip_to_finite(ax_time, rows, sweep_dir)
    for ax in (ax_tokens, ax_time):
        ax.grid(alpha=0.3)
    if mappable is not None:
        fig.colorbar(mappable, ax=[ax_tokens, ax_time], label=key)
    if len(rows) <= 16:
        ax_time.legend(fontsize="x-small")
    fig.suptitle(title or f"{sweep_dir.name}: {len(rows)} trials, coloured by {key or 'trial'}")
    return fig


def _styles(others: list[str], rows: list[SummaryRow]):
    """Line style by the second varied axis (solid, dashed, …)."""
    if not others:
        return lambda r: "-"
    values = sorted({r.values.get(others[0]) for r in rows}, key=str)
    table = {v: LINE_STYLES[i % len(LINE_STYLES)] for i, v in enumerate(values)}
    return lambda r: table[r.values.get(others[0])]


def _wall_times(run_dir: Path) -> tuple[list[float | None], list[float | None]]:
    """Wall time of each training record and of each validation record, in ``load_curves``' order."""
    from cs336_lm.training.metrics import read_metrics

    train, val = [], []
    for r in read_metrics(run_dir / "metrics.jsonl"):
        if not isinstance(r.get("step"), int | float):
            continue
        t = r.get("wall_time_s")
        if isinstance(r.get("loss"), int | float):
            train.append(t)
        if isinstance(r.get("val_loss"), int | float):
            val.append(t)
    return train, val


def _plot(ax, xs: list, ys: list[float], **style) -> None:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if x is not None and math.isfinite(y)]
    if pairs:
        ax.plot([x for x, _ in pairs], [y for _, y in pairs], **style)


def _clip_to_finite(ax, rows: list[SummaryRow], sweep_dir: Path) -> None:
    """A diverged trial's loss can reach 1e6: keep the y axis on the trials that trained (up to their first loss)."""
    good = [r for r in rows if r.status != "diverged"]
    if not good:
        return
    tops, bottoms = [], []
    for r in good:
        c = load_curves(sweep_dir / r.name)
        losses = [v for v in c.train_loss + c.val_loss if math.isfinite(v)]
        if losses:
            tops.append(losses[0] if c.train_loss else max(losses))
            bottoms.append(min(losses))
    if tops:
        span = max(tops) - min(bottoms)
        ax.set_ylim(min(bottoms) - 0.05 * span, max(tops) + 0.1 * span)


def _figure_values(keys: list[str], rows: list[SummaryRow], title: str | None):
    figure_cls, _ = _import_matplotlib()
    varied = [k for k in keys if len({r.values.get(k) for r in rows}) > 1] or keys[:1]
    fig = figure_cls(figsize=(5 * max(1, len(varied)), 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(varied)), squeeze=False)[0]
    finals = [r.metrics.get("final_val_loss") for r in rows if r.status != "diverged"]
    finite = [v for v in finals if v is not None and math.isfinite(v)]
    top = max(finite) if finite else 1.0
    for ax, key in zip(axes, varied, strict=False):
        xs: list[Any] = sorted({r.values.get(key) for r in rows}, key=lambda v: (isinstance(v, str), str(v)))
        if _numeric(xs):
            xs.sort()
        numeric = _numeric(xs)
        position = {v: (v if numeric else i) for i, v in enumerate(xs)}
        groups: dict[tuple, list[SummaryRow]] = {}
        for r in rows:  # the rows that share every other axis's value form one line
            rest = tuple((k, str(r.values.get(k))) for k in keys if k != key and k != "train.seed")
            groups.setdefault(rest, []).append(r)
        for i, (rest, members) in enumerate(sorted(groups.items())):
            done = sorted((position[r.values.get(key)], r.metrics["final_val_loss"]) for r in members
                          if r.status != "diverged" and "final_val_loss" in r.metrics)  # fmt: skip
            label = ", ".join(f"{k.rpartition('.')[2]}={v}" for k, v in rest) or None
            if done:
                ax.plot(*zip(*done, strict=True), marker="o", color=f"C{i % 10}", label=label)
            bad = [position[r.values.get(key)] for r in members if r.status == "diverged"]
            if bad:
                ax.plot(bad, [top] * len(bad), "x", color=f"C{i % 10}", ms=9, mew=2)
        if numeric and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set(xlabel=key, ylabel="final validation loss (nats)", title=f"final loss vs {key} (x: diverged)")
        ax.grid(alpha=0.3)
        if len(groups) > 1 and len(groups) <= 10:
            ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig
