"""The study's runs as an ``lm-sweep`` study: one trial per planned run, each trial the run's overrides on the
base config, so that the runs train, resume and spread over machines the way every sweep does.

Until ``cs336_lm.sweep`` is available this writes nothing and says how to train the runs with ``lm-train``.
"""

from __future__ import annotations

import shlex

from cs336_lm.scaling.study import Study


def write_sweep(study: Study) -> str:
    """Create the sweep study for ``study`` (module docstring); a line or two saying how to run it."""
    lines = [f"lm-sweep is not available here; train the {len(study.runs)} runs with lm-train:"]
    for run in study.runs:
        lines.append(shlex.join(["lm-train", "--config", study.config_path, *study.run_overrides(run)]))
    return "\n".join(lines)
