"""A run and what it is made of: the run directory's layout (``rundir``), the checkpoint file format
(``checkpoint``), the model built from a config or loaded from a run (``model``), the device rule (``device``) and
the CPU thread rule (``threads``).

Training writes runs; generation, evaluation, serving and export read them, all through this package.
"""

from cs336_lm.run.checkpoint import (
    Snapshot,
    apply_checkpoint,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
    verify_checkpoint,
)
from cs336_lm.run.device import select_device
from cs336_lm.run.model import LoadedRun, build_model, load_run
from cs336_lm.run.rundir import ResumePoint, RunDir

__all__ = [
    "LoadedRun",
    "ResumePoint",
    "RunDir",
    "Snapshot",
    "apply_checkpoint",
    "build_model",
    "capture_rng_state",
    "load_checkpoint",
    "load_run",
    "read_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "select_device",
    "unwrap_model",
    "verify_checkpoint",
]
