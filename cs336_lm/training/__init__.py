"""Training: checkpoints (``checkpoint``), the loop (``trainer``), its inputs, run directory, runtime and metrics.

``train(cfg)`` runs (or resumes) the experiment a ``cs336_lm.config.Config`` describes; ``save_checkpoint`` /
``load_checkpoint`` read and write single checkpoint files.
"""

from cs336_lm.training.checkpoint import load_checkpoint, save_checkpoint
from cs336_lm.training.trainer import NonFiniteLossError, Trainer, TrainResult, train

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "load_checkpoint", "save_checkpoint", "train"]
