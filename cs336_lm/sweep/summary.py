"""The sweep's summary: one row per trial, sorted by validation loss; with seeds, each point's mean ± std and whether
its difference from the best point is larger than the spread.

``run_metrics(run_dir)`` reads what a finished (or running) trial's ``metrics.jsonl`` says: best and final validation
loss, tokens, mean tokens/s over the logged steps, wall time and step. ``SummaryRow`` joins that with the trial's
swept values and status. ``write_summary`` writes ``summary.csv`` (one column per swept key, machine-readable) and
``summary.md`` (the table ``lm-sweep`` prints, then the seed table) atomically. ``read_summary_csv`` reads the CSV back
(``lm-plot`` draws from it).

The comparison with seeds: point A (mean a, std sa over its seeds) and the best point B (b, sb) differ by more than
the spread when ``|a - b| > sa + sb``: their mean ± std intervals do not overlap. With n seeds that is a rough rule
(about a two-sigma gap for n ≥ 3), written out in the table's last column as ``yes``/``no``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_lm.fileio import atomic_write
from cs336_lm.sweep.grammar import format_value, parse_scalar
from cs336_lm.training.metrics import read_metrics

METRIC_COLUMNS = ("best_val_loss", "final_val_loss", "tokens", "tokens_per_s", "wall_s", "step")


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """``{"best_val_loss": 3.21, "final_val_loss": 3.25, "tokens": 76800, "tokens_per_s": 5120.0, "wall_s": 15.2,
    "step": 300}`` from ``run_dir/metrics.jsonl`` (fields absent when no record had them; ``{}`` without the file)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    records = read_metrics(path)
    vals = [r["val_loss"] for r in records if _finite(r.get("val_loss"))]
    speeds = [r["tokens_per_s"] for r in records if _finite(r.get("tokens_per_s"))]
    out: dict[str, Any] = {}
    if vals:
        out["best_val_loss"], out["final_val_loss"] = min(vals), vals[-1]
    for key, source in (("tokens", "tokens"), ("wall_s", "wall_time_s"), ("step", "step")):
        seen = [r[source] for r in records if _finite(r.get(source))]
        if seen:
            out[key] = seen[-1]
    if speeds:
        out["tokens_per_s"] = statistics.fmean(speeds)
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class SummaryRow:
    """One trial of the summary."""

    name: str
    point: str
    values: dict[str, Any]  # swept key -> value (train.seed included with --seeds)
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def sort_key(self) -> tuple[float, str]:
        best = self.metrics.get("best_val_loss")
        if best is None or not _finite(best) or self.status == "diverged":
            return (math.inf, self.name)
        return (float(best), self.name)


def sort_rows(rows: list[SummaryRow]) -> list[SummaryRow]:
    """By best validation loss, lowest first; diverged trials and trials without one last, then by name."""
    return sorted(rows, key=lambda r: r.sort_key)


def _keys(rows: list[SummaryRow]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.values if k not in keys]
    return keys


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if digits and abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def table(rows: list[SummaryRow]) -> str:
    """A Markdown table: trial, swept values, status, best/final val loss, tokens, tokens/s, wall time."""
    keys = _keys(rows)
    head = ["trial", *keys, "status", "best val", "final val", "tokens", "tok/s", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sort_rows(rows):
        m = r.metrics
        cells = [
            r.name,
            *(format_value(r.values[k]) if k in r.values else "" for k in keys),
            r.status,
            _fmt(m.get("best_val_loss")),
            _fmt(m.get("final_val_loss")),
            _fmt(m.get("tokens")),
            _fmt(m.get("tokens_per_s"), 0),
            _fmt(m.get("wall_s"), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class PointStats:
    """A point's best validation losses over its seeds (finished, non-diverged trials only)."""

    point: str
    losses: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses)

    @property
    def std(self) -> float:
        return statistics.stdev(self.losses) if len(self.losses) > 1 else 0.0


def point_stats(rows: list[SummaryRow]) -> list[PointStats]:
    """Each point's seeds' best validation losses, best mean first."""
    by_point: dict[str, list[float]] = {}
    for r in rows:
        best = r.metrics.get("best_val_loss")
        if r.status == "done" and best is not None and _finite(best):
            by_point.setdefault(r.point, []).append(float(best))
    return sorted((PointStats(p, v) for p, v in by_point.items()), key=lambda s: s.mean)


def beyond_spread(a: PointStats, b: PointStats) -> bool:
    """Whether the means differ by more than the two standard deviations together (the intervals do not overlap)."""
    return abs(a.mean - b.mean) > a.std + b.std


def seed_table(rows: list[SummaryRow]) -> str:
    """Per point: seeds, best val loss mean ± std, the gap to the best point and whether it exceeds the spread."""
    stats = point_stats(rows)
    if not stats:
        return ""
    best = stats[0]
    lines = ["| point | seeds | best val (mean ± std) | vs best | beyond the spread |", "|---|---|---|---|---|"]
    for s in stats:
        gap = "best" if s is best else f"+{s.mean - best.mean:.4f}"
        verdict = "" if s is best else ("yes" if beyond_spread(s, best) else "no")
        lines.append(f"| {s.point} | {len(s.losses)} | {s.mean:.4f} ± {s.std:.4f} | {gap} | {verdict} |")
    return "\n".join(lines)


def markdown(rows: list[SummaryRow]) -> str:
    text = table(rows) + "\n"
    seeds = seed_table(rows) if any(len(s.losses) > 1 for s in point_stats(rows)) else ""
    if seeds:
        text += "\nOver seeds (a gap is beyond the spread when it exceeds the two standard deviations together):\n\n"
        text += seeds + "\n"
    failed = [r for r in sort_rows(rows) if r.error and r.status in ("failed", "diverged")]
    if failed:
        text += "\n" + "\n".join(f"- {r.name} ({r.status}): {r.error}" for r in failed) + "\n"
    return text


def to_csv(rows: list[SummaryRow]) -> str:
    keys = _keys(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "point", *keys, "status", *METRIC_COLUMNS, "error"])
    for r in sort_rows(rows):
        values = [format_value(r.values[k]) if k in r.values else "" for k in keys]
        writer.writerow([r.name, r.point, *values, r.status, *(r.metrics.get(c, "") for c in METRIC_COLUMNS), r.error])
    return buf.getvalue()


def write_summary(rows: list[SummaryRow], out_dir: Path) -> tuple[Path, Path]:
    """``out_dir/summary.csv`` and ``out_dir/summary.md``, each written whole or not at all."""
    paths = out_dir / "summary.csv", out_dir / "summary.md"
    for path, text in zip(paths, (to_csv(rows), markdown(rows)), strict=True):
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(text)
    return paths


def read_summary_csv(path: Path) -> tuple[list[str], list[SummaryRow]]:
    """The swept keys and the rows of a ``summary.csv`` (values and metrics parsed back to numbers)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        head = next(reader)
        keys = head[2 : head.index("status")]
        rows = []
        for cells in reader:
            record = dict(zip(head, cells, strict=False))
            values = {k: parse_scalar(record[k], k) for k in keys if record.get(k, "") != ""}
            metrics = {c: float(record[c]) for c in METRIC_COLUMNS if record.get(c, "") not in ("", None)}
            rows.append(
                SummaryRow(record["trial"], record["point"], values, record["status"], metrics, record["error"])
            )
    return keys, rows
