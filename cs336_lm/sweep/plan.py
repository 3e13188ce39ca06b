"""A sweep's plan: the config, its fixed overrides, its axes and seeds; every trial it holds; checked before any runs.

``SweepPlan`` is what decides which trials exist. A grid's trials are known up front (``grid_trials``: the product of
the axes, times the seeds); a search's are drawn one by one by the sampler, and ``trial_for(values, seed_index)``
turns a drawn point into a trial. ``validate()`` loads the config with every grid point's overrides (a search's every
choice and both ends of each range), so an unknown key or a value the schema refuses is one ``ConfigError`` before
anything trains. ``describe()`` is the plan as stored beside the study (``sweep.json`` and the study's attributes); a
second sweep into the same directory with other axes is refused by ``difference``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_lm.config import load_config
from cs336_lm.errors import ConfigError
from cs336_lm.sweep.grammar import Arguments, Axis, Scalar, grid_points, overrides_for, parse_arguments, trial_name

SEED_KEY = "train.seed"
FORBIDDEN_KEYS = ("train.out_dir", "train.resume")  # the sweep sets these for each trial


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: its directory ``name``, the swept ``values`` (plus ``train.seed`` with ``--seeds``), the
    ``point`` name shared by its seeds, and the overrides that ``lm-train`` gets (fixed ones first)."""

    name: str
    point: str
    values: dict[str, Scalar]
    seed_index: int
    overrides: tuple[str, ...]


@dataclass
class SweepPlan:
    """``config`` (a YAML path), the parsed ``key=value`` arguments, ``seeds`` repeats of each point (seed = the
    config's ``train.seed`` + 0, 1, …), and for a search ``trials`` (points to draw) and ``sampler``."""

    config: Path
    arguments: Arguments
    seeds: int = 1
    trials: int | None = None
    sampler: str = "tpe"
    points: tuple[dict[str, Scalar], ...] | None = None  # explicit points instead of the axes' product
    base_seed: int = field(default=0, init=False)

    @classmethod
    def from_args(
        cls, config: str | Path, items: list[str], seeds: int = 1, trials: int | None = None, sampler: str = "tpe"
    ) -> SweepPlan:
        """The plan of ``lm-sweep --config CONFIG ITEMS… [--seeds S] [--trials N --sampler S]``, checked."""
        plan = cls(Path(config), parse_arguments(items), seeds, trials, sampler)
        plan.validate()
        return plan

    @classmethod
    def from_points(
        cls,
        config: str | Path,
        points: list[dict[str, Scalar]],
        fixed: tuple[str, ...] | list[str] = (),
        seeds: int = 1,
    ) -> SweepPlan:
        """A plan of explicit points, e.g. ``[{"model.d_model": 64, "train.max_steps": 500}, {"model.d_model": 128,
        "train.max_steps": 250}]`` (trials that vary together rather than as a product), checked."""
        if not points:
            raise ConfigError("a sweep of explicit points needs at least one point")
        plan = cls(Path(config), parse_arguments(list(fixed)), seeds, points=tuple(dict(p) for p in points))
        if plan.arguments.axes:
            raise ConfigError("the fixed overrides of a sweep of explicit points must be single values")
        plan.validate()
        return plan

    @property
    def is_search(self) -> bool:
        return self.arguments.is_search

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.arguments.axes

    def validate(self) -> None:
        """Refuse a plan that cannot run: see the module docstring. Raises ``ConfigError`` naming the argument."""
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if self.is_search and not self.trials:
            ranges = " ".join(a.text for a in self.axes if a.is_range)
            raise ConfigError(f"a search ({ranges}) needs --trials N")
        if not self.is_search and self.trials is not None:
            raise ConfigError("--trials is for a search: give a range such as optim.lr=loguniform(1e-4,1e-1)")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        keys = [a.key for a in self.axes] + [f.partition("=")[0] for f in self.arguments.fixed]
        keys += [k for p in self.points or () for k in p]
        for key in FORBIDDEN_KEYS:
            if key in keys:
                raise ConfigError(f"{key} is set by lm-sweep for each trial (DIR/<trial name>); leave it out")
        if self.seeds > 1 and SEED_KEY in keys:
            raise ConfigError(f"--seeds {self.seeds} sets {SEED_KEY} itself; sweep it or use --seeds, not both")
        base = self._load([])  # the config file and the fixed overrides alone
        self.base_seed = base.train.seed
        for axis in self.axes:
            for value in axis.corners():
                self._load(overrides_for({axis.key: value}), axis.text)
        if self.points is not None or (not self.is_search and len(self.axes) > 1):
            for trial in self.grid_trials():  # combinations can fail where single values pass (min_lr > lr)
                self._load(list(trial.overrides[len(self.arguments.fixed) :]))

    def _load(self, extra: list[str], where: str | None = None) -> Any:
        try:
            return load_config(self.config, [*self.arguments.fixed, *extra, "train.out_dir=."])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}" if where else str(e)) from None

    def grid_trials(self) -> list[Trial]:
        """Every trial of a grid, point by point, each point's seeds together."""
        points = self.points if self.points is not None else grid_points(self.axes)
        names = [trial_name(p) for p in points]
        if len(set(names)) != len(names):
            raise ConfigError("two points of the sweep are the same point")
        return [self.trial_for(dict(values), s) for values in points for s in range(self.seeds)]

    def trial_for(self, values: dict[str, Scalar], seed_index: int) -> Trial:
        """The trial of the point ``values`` with its ``seed_index``-th seed."""
        point = trial_name(values)
        full = dict(values)
        if self.seeds > 1:
            full[SEED_KEY] = self.base_seed + seed_index
        name = trial_name(full)
        return Trial(name, point, full, seed_index, (*self.arguments.fixed, *overrides_for(full)))

    def total(self) -> int:
        """How many trials the sweep holds when it is done."""
        if self.is_search:
            assert self.trials is not None
            return self.trials * self.seeds
        return len(self.points if self.points is not None else grid_points(self.axes)) * self.seeds

    def describe(self) -> dict[str, Any]:
        """What makes two sweeps the same sweep (``--trials`` and ``--workers`` may change between runs)."""
        return {
            "config": _digest_of(self.config),
            "fixed": list(self.arguments.fixed),
            "axes": [a.text for a in self.axes] if self.points is None else [trial_name(p) for p in self.points],
            "seeds": self.seeds,
            "sampler": self.sampler if self.is_search else None,
        }

    def to_json(self) -> str:
        return json.dumps({**self.describe(), "trials": self.trials}, indent=2) + "\n"


def difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """None when two descriptions are the same sweep, else what differs: ``axes: optim.lr=1e-3,1e-2 before, now
    optim.lr=3e-3,1e-2``."""
    for key in ("axes", "fixed", "seeds", "sampler", "config"):
        before, now = stored.get(key), current.get(key)
        if before != now:
            if key == "config":
                return "config: the config file's contents differ from the sweep's first run"
            show = (lambda v: " ".join(v) or "none") if key in ("axes", "fixed") else str
            return f"{key}: {show(before)} before, now {show(now)}"
    return None


def _digest_of(path: Path) -> str:
    """The config file's SHA-256 (its path may differ between machines sharing a study; its contents may not)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
