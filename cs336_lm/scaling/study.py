"""A scaling study on disk: ``DIR/scaling.json`` (the plan) beside the run directories its runs train into, and
the final validation losses read back from them.

``scaling.json`` records the base config (its path, the user's ``key=value`` overrides and the resolved config
they gave), the planning options and every ``PlannedRun``. ``run_config`` is the full config of one run: the base
config, the user's overrides, then the run's shape and steps, its ``train.out_dir`` and evaluation at the end only
(``train.eval_every=0``: the fit reads one loss per run). The runs are trained as an ``lm-sweep`` study
(``cs336_lm.scaling.sweep``; ``layout: sweep``) or one at a time by ``train_run`` (``layout: runs``); either way
each is an ordinary run directory.

``read_results`` sorts the runs into finished (a finite validation loss at the planned last step), diverged (a
non-finite loss anywhere, or a final loss above ln(vocab_size), worse than guessing uniformly) and missing (no
final validation loss yet), and refuses a directory whose runs were trained with another config than the plan's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cs336_lm.config import Config, load_config, to_dict
from cs336_lm.errors import ConfigError, DataError
from cs336_lm.fileio import atomic_write, output_directory
from cs336_lm.scaling.plan import PlannedRun
from cs336_lm.training.metrics import read_metrics

PLAN_FILE = "scaling.json"
RUNS = "runs"
FORMAT = 1
RUN_SETTINGS = ("train.eval_every=0",)
"""Overrides every planned run gets after its own (see the module docstring)."""
IGNORED_KEYS = {"train": ("out_dir", "threads", "device", "resume", "eval_every", "ckpt_every", "log_every")}
"""Config keys two runs of one study may differ in (where and how a run ran, not what it learned)."""


@dataclass
class Study:
    """The plan of one study directory."""

    root: Path
    config_path: str
    overrides: list[str]
    base: dict[str, Any]
    """The resolved base config (``cs336_lm.config.to_dict``), before any run's overrides."""
    options: dict[str, Any]
    runs: list[PlannedRun] = field(default_factory=list)
    layout: str = "runs"
    """``sweep``: the runs are lm-sweep trials in ``DIR/<trial name>`` (``cs336_lm.scaling.sweep``); ``runs``: they
    live in ``DIR/runs/<run name>``, trained one by one (where ``cs336_lm.sweep`` is not installed)."""

    @property
    def budgets(self) -> list[float]:
        return sorted({r.budget for r in self.runs})

    def run_dir(self, run: PlannedRun) -> Path:
        if self.layout == "sweep":
            from cs336_lm.scaling.sweep import trial_dir

            return trial_dir(self, run)
        return self.root / RUNS / run.name

    def base_config(self) -> Config:
        """The base config as its file and the study's overrides give it now. A ``ConfigError`` when that is not
        the config the study was planned with (the file was edited since), or the file is not found (it is read
        relative to the directory the study was planned from, as the data paths are)."""
        if not Path(self.config_path).is_file():
            raise ConfigError(f"the study's config {self.config_path} is not found from {Path.cwd()}; "
                              "run lm-scaling from the directory the study was planned in")  # fmt: skip
        cfg = load_config(self.config_path, self.overrides)
        planned, now = _comparable(self.base), _comparable(to_dict(cfg))
        if planned != now:
            raise ConfigError(f"{self.config_path} is no longer the config {self.root} was planned with "
                              f"({_first_difference(planned, now)}); restore it, or plan a new study")  # fmt: skip
        return cfg

    def run_overrides(self, run: PlannedRun) -> list[str]:
        """The overrides that make ``run`` from the base config file (module docstring)."""
        return [*self.overrides, *run.overrides(), f"train.out_dir={self.run_dir(run)}", *RUN_SETTINGS]

    def run_config(self, run: PlannedRun, extra: list[str] | tuple[str, ...] = ()) -> Config:
        return load_config(self.config_path, [*self.run_overrides(run), *extra])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config_path,
            "overrides": self.overrides,
            "base": self.base,
            "options": self.options,
            "runs": [r.to_dict() for r in self.runs],
            "layout": self.layout,
        }

    def save(self) -> Path:
        path = self.root / PLAN_FILE
        with output_directory(self.root), atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")
        return path


def new_study(
    root: Path, config_path: str, overrides: list[str], options: dict, runs: list[PlannedRun], layout: str = "runs"
) -> Study:
    """A study of ``runs`` on the base config; a directory that already holds another plan is refused."""
    base = to_dict(load_config(config_path, overrides))
    study = Study(Path(root), str(config_path), list(overrides), base, dict(options), list(runs), layout)
    if (study.root / PLAN_FILE).exists():
        old = load_study(study.root)
        if _comparable(old.base) != _comparable(base):
            raise ConfigError(f"{root} holds a study of another config ({_first_difference(old.base, base)}); "
                              "one study directory holds one config: choose another --out")  # fmt: skip
        if [r.to_dict() for r in old.runs] != [r.to_dict() for r in runs]:
            raise ConfigError(f"{root} holds a study with other budgets or sizes; choose another --out")
    return study


def load_study(root: str | Path) -> Study:
    root = Path(root)
    path = root / PLAN_FILE
    if not path.is_file():
        raise DataError(f"{root} is not a scaling study: no {PLAN_FILE} (lm-scaling plan writes it)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        runs = [PlannedRun.from_dict(r) for r in d["runs"]]
        return Study(root, d["config"], list(d["overrides"]), d["base"], d["options"], runs, d.get("layout", "runs"))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is not a valid scaling plan: {e}") from None


def train_run(study: Study, run: PlannedRun, extra: list[str] | tuple[str, ...] = ()) -> float | None:
    """Train (or resume) one planned run; its final validation loss."""
    from cs336_lm.training import train

    return train(study.run_config(run, extra)).val_loss


# ---- results --------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """The final validation loss of each finished run, and the names of the others."""

    finished: dict[str, float] = field(default_factory=dict)
    diverged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def read_results(study: Study) -> Results:
    """Sort the study's runs by what their run directories hold (module docstring)."""
    results = Results()
    expected = _comparable(study.base)
    vocab = study.base["model"]["vocab_size"]
    for run in study.runs:
        folder = study.run_dir(run)
        saved = folder / "config.yaml"
        if saved.is_file():
            config = yaml.safe_load(saved.read_text(encoding="utf-8"))
            mine = _comparable(config)
            if mine != expected:
                raise ConfigError(
                    f"run {run.name} in {study.root} was trained with another config than the study's "
                    f"({_first_difference(expected, mine)}); one study directory holds one config"
                )
        records = read_metrics(folder / "metrics.jsonl")
        losses = [r[k] for r in records for k in ("loss", "val_loss") if isinstance(r.get(k), int | float)]
        final = [r["val_loss"] for r in records if r.get("step") == run.steps and "val_loss" in r]
        if any(not math.isfinite(x) for x in losses) or (final and final[-1] > math.log(vocab)):
            results.diverged.append(run.name)
        elif final:
            results.finished[run.name] = float(final[-1])
        else:
            results.missing.append(run.name)
    return results


def _comparable(config: dict) -> dict:
    """``config`` without what runs of one study may differ in: the shape fields and steps (set per run) and
    ``IGNORED_KEYS``."""
    config = json.loads(json.dumps(config))
    for key in ("d_model", "num_layers", "num_heads", "num_kv_heads", "d_ff", "preset"):
        config.get("model", {}).pop(key, None)
    config.get("train", {}).pop("max_steps", None)
    for section, keys in IGNORED_KEYS.items():
        for key in keys:
            config.get(section, {}).pop(key, None)
    return config


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    """``optim.lr: 0.003 vs 0.01``: the first key where two nested dicts differ."""
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = _first_difference(x, y, f"{prefix}{key}.")
            if found:
                return found
        elif x != y:
            return f"{prefix}{key}: {x!r} vs {y!r}"
    return ""
