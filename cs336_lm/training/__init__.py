"""Training: the run's setup (``setup``), the loop (``trainer``), its inputs, runtime, parallelism and metrics.

``train(cfg)`` runs (or resumes) the experiment a ``cs336_lm.config.Config`` describes. ``save_checkpoint`` /
``load_checkpoint`` (from ``cs336_lm.run``, re-exported here) read and write single checkpoint files.
"""

from cs336_lm.errors import NonFiniteLossError
from cs336_lm.run.checkpoint import load_checkpoint, save_checkpoint
from cs336_lm.training.trainer import Trainer, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "load_checkpoint", "save_checkpoint", "train"]
