"""The IsoFLOP planner: for each compute budget C, K model sizes around the expected optimum, each trained for
the number of steps that spends C.

FLOPs are counted exactly, with ``cs336_lm.nn.accounting.training_flops_per_token(args, context_length)`` (3 × the
forward's matmuls, the T×T attention products and the LM head included), not with 6·N: at this project's small
widths and a context of 256 the attention products add 15–40% to 6·N, and more to the small models than to the
large ones, so budgets counted with 6·N would give the small models more compute than the large ones and tilt the
fitted optimum. A run of ``steps`` optimizer steps of ``tokens_per_step`` tokens spends
``steps · tokens_per_step · flops_per_token``; ``steps`` is that rounded to the nearest integer, so a run spends its
budget within ``1 / (2 · min_steps)`` (1% at the default 50 steps).

Sizes per budget: the centre is the size that 6·N·D = C with D = ``tokens_per_param`` · N gives (Chinchilla's
20 tokens per parameter by default), and the K target counts are spaced evenly in log N over ``span`` (16×) around
it, then turned into shapes by ``cs336_lm.scaling.shapes.shape_for_params``. A window reaching below the smallest
shape moves up until its lowest target is that shape (small budgets would otherwise plan the smallest shape several
times); when the larger targets would train fewer than ``min_steps`` steps, the window moves down until every size
fits. Shapes that two targets share are planned once (with a warning that says why the budget has fewer sizes than
asked). A budget where fewer than three distinct shapes fit cannot locate a minimum: ``ConfigError``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

from cs336_lm.errors import ConfigError
from cs336_lm.nn import ModelArgs
from cs336_lm.nn.accounting import training_flops_per_token
from cs336_lm.scaling.shapes import describe, ladder, non_embedding_params, shape_for_params

MIN_SIZES = 3
"""A parabola needs three distinct sizes; fewer, and a budget has no minimum to find."""
SHAPE_KEYS = ("d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff")
"""The ``model`` fields a planned run sets on top of the base config."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: a shape trained for ``steps`` steps at one budget."""

    name: str
    """Unique in the study, e.g. ``c3e+12-n291k``."""
    budget: float
    """The compute budget C (FLOPs) this run belongs to."""
    shape: dict
    """The model fields that differ between the runs (``SHAPE_KEYS``)."""
    params: int
    """Non-embedding parameters N."""
    flops_per_token: float
    """Exact training FLOPs per token of this shape."""
    tokens_per_step: int
    steps: int

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def flops(self) -> float:
        """FLOPs the run actually spends (C up to the rounding of ``steps``)."""
        return self.tokens * self.flops_per_token

    def overrides(self) -> list[str]:
        """The ``key=value`` config overrides that make this run from the base config (eval and checkpoint at the
        end only: the final validation loss is all a fit reads)."""
        shape = [f"model.{k}={'null' if v is None else v}" for k, v in self.shape.items()]
        return [*shape, f"train.max_steps={self.steps}"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PlannedRun:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def run_name(budget: float, params: int) -> str:
    """``c3e+12-n291k``: the budget with three significant digits and N in thousands."""
    return f"c{budget:.3g}-n{round(params / 1000)}k"


def tokens_per_step(batch_size: int, grad_accum_steps: int, context_length: int) -> int:
    return batch_size * grad_accum_steps * context_length


def plan_run(base: ModelArgs, shape: ModelArgs, budget: float, step_tokens: int) -> PlannedRun:
    ftok = training_flops_per_token(shape, base.context_length)
    steps = round(budget / (ftok * step_tokens))
    params = non_embedding_params(shape)
    fields = {k: getattr(shape, k) for k in SHAPE_KEYS}
    return PlannedRun(run_name(budget, params), budget, fields, params, ftok, step_tokens, steps)


def plan_budget(
    base: ModelArgs,
    budget: float,
    sizes: int,
    step_tokens: int,
    *,
    tokens_per_param: float = 20.0,
    span: float = 16.0,
    min_steps: int = 50,
) -> list[PlannedRun]:
    """The runs of one budget, smallest model first (module docstring)."""
    if sizes < MIN_SIZES:
        raise ConfigError(f"--sizes must be at least {MIN_SIZES} (a parabola needs three points), got {sizes}")
    smallest = plan_run(base, ladder(base)[0], budget, step_tokens)
    if smallest.steps < min_steps:
        raise ConfigError(
            f"budget {budget:.3g} FLOPs is too small for any shape: the smallest ({describe(ladder(base)[0])}, "
            f"N = {smallest.params:,}) would train {smallest.steps} steps of {step_tokens:,} tokens; "
            f"at least {min_steps} are needed"
        )
    # the window's lowest target starts no lower than the smallest shape, then moves down while a size is too big
    centre = max(math.sqrt(budget / (6 * tokens_per_param)), smallest.params * math.sqrt(span))
    squeezed = False  # the window moved down for --min-steps
    while True:
        targets = [centre * span ** (i / (sizes - 1) - 0.5) for i in range(sizes)]
        runs: dict[str, PlannedRun] = {}
        for target in targets:
            run = plan_run(base, shape_for_params(target, base), budget, step_tokens)
            runs.setdefault(run.name, run)
        if all(r.steps >= min_steps for r in runs.values()):
            break
        centre /= 1.1
        squeezed = True
    planned = sorted(runs.values(), key=lambda r: r.params)
    if len(planned) < MIN_SIZES:
        raise ConfigError(
            f"budget {budget:.3g} FLOPs leaves only {len(planned)} distinct shape(s) with at least {min_steps} steps; "
            f"raise the budget or --span"
        )
    if len(planned) < sizes:
        largest = ladder(base)[-1]
        why = (
            f"the sizes reach the rule's largest shape ({describe(largest)}, N = {non_embedding_params(largest):,}), "
            "so this budget's optimum may lie above them"
            if planned[-1].params == non_embedding_params(largest)
            else f"targets {targets[0]:.3g} to {targets[-1]:.3g} fell on the same shapes; "
            + ("the largest sizes are held down by --min-steps" if squeezed else "a wider --span separates them")
        )
        warnings.warn(f"budget {budget:.3g}: {len(planned)} distinct sizes of the {sizes} asked: {why}", stacklevel=2)
    return planned


def plan_study(base: ModelArgs, budgets: list[float], sizes: int, step_tokens: int, **options) -> list[PlannedRun]:
    """Every budget's runs, budgets in increasing order."""
    if not budgets:
        raise ConfigError("--budgets needs at least one budget")
    if len(set(budgets)) != len(budgets):
        raise ConfigError("--budgets lists a budget twice")
    for b in budgets:
        if not (math.isfinite(b) and b > 0):
            raise ConfigError(f"a budget must be a positive number of FLOPs, got {b!r}")
    runs = []
    for budget in sorted(budgets):
        runs += plan_budget(base, budget, sizes, step_tokens, **options)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two budgets are too close to tell their runs apart (their names agree to 3 digits)")
    return runs


def parse_budgets(text: str) -> list[float]:
    """``"1e12,2e12, 4e12"`` → ``[1e12, 2e12, 4e12]``; anything else is a ``ConfigError``."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--budgets must be numbers separated by commas (e.g. 1e12,2e12), got {text!r}") from None


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def table(runs: list[PlannedRun], tokens_per_second: dict[str, float] | None = None) -> str:
    """The plan as a text table; with measured ``tokens_per_second`` (by run name) an estimated time per run and
    in total."""
    head = f"{'budget':>9} {'run':<16} {'shape':<20} {'N':>8} {'tokens':>8} {'D/N':>6} {'steps':>6} {'spent':>7}"
    if tokens_per_second:
        head += f" {'tok/s':>7} {'time':>8}"
    lines, total = [head], 0.0
    for r in runs:
        shape = f"d{r.shape['d_model']} L{r.shape['num_layers']} h{r.shape['num_heads']} ff{r.shape['d_ff']}"
        line = (
            f"{r.budget:>9.3g} {r.name:<16} {shape:<20} {_count(r.params):>8} {_count(r.tokens):>8} "
            f"{r.tokens / r.params:>6.1f} {r.steps:>6} {r.flops / r.budget:>7.2%}"
        )
        if tokens_per_second:
            seconds = r.tokens / tokens_per_second[r.name]
            total += seconds
            line += f" {_count(tokens_per_second[r.name]):>7} {_duration(seconds):>8}"
        lines.append(line)
    if tokens_per_second:
        lines.append(f"{len(runs)} runs, estimated {_duration(total)} on this machine, one run at a time")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.2f}h"
