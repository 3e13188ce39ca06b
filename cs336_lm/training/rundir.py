"""The run directory (``train.out_dir``): what is in it, whether to resume from it, and what a run writes there.

Layout (DESIGN.md): ``config.yaml`` (the resolved config), ``tokenizer/`` (a copy, so ``lm-generate RUN_DIR``
needs nothing else), ``metrics.jsonl`` and ``checkpoints/step_XXXXXXXX.pt`` with a ``checkpoints/latest``
pointer (both kept by ``cs336_lm.training.checkpoint``). ``RunDir.resume_source`` turns ``train.resume``
(``auto``/``none``/a path) into the checkpoint to start from, refusing to clobber an existing run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from cs336_lm.config import ARCH_FIELDS, Config, to_yaml
from cs336_lm.errors import ConfigError
from cs336_lm.fileio import atomic_directory, atomic_write
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training import checkpoint as ckpt

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TOKENIZER_DIR = "tokenizer"
CHECKPOINTS_DIR = "checkpoints"


class RunDir:
    """Paths and policies of one run directory; creating it is the only thing the constructor does.

    ``create=False`` (the non-main ranks of a multi-process run, which only read) leaves the directory alone.
    """

    def __init__(self, root: Path, create: bool = True):
        self.root = Path(root)
        self.checkpoints = self.root / CHECKPOINTS_DIR
        self.metrics = self.root / METRICS_FILE
        if create:
            self._check_writable()

    def _check_writable(self) -> None:
        """Create the directory if needed and prove a file can be written in it (``ConfigError`` otherwise)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise ConfigError(f"train.out_dir {self.root} is not a writable directory ({reason})") from None

    def latest(self) -> Path | None:
        """The newest checkpoint of this run, or None when it has none."""
        return ckpt.latest_checkpoint(self.root)

    def resume_source(self, resume: str) -> Path | None:
        """The checkpoint to start from for ``train.resume``: ``auto``, ``none`` or a checkpoint/run-dir path."""
        latest = self.latest()
        if resume == "none":
            if latest is not None:
                raise ConfigError(
                    f"train.out_dir {self.root} already holds a run (latest checkpoint {latest.name}); "
                    "continue it with train.resume=auto or choose a new train.out_dir"
                )
            return None
        if resume == "auto":
            return latest
        path = Path(resume)
        if path.is_dir():
            found = ckpt.latest_checkpoint(path)
            if found is None:
                raise ConfigError(f"train.resume={resume}: that directory holds no checkpoint")
            return found
        if not path.is_file():
            raise ConfigError(f"train.resume={resume}: no such checkpoint file (use auto, none or a .pt path)")
        return path

    def check_compatible(self, cfg: Config, stored: dict[str, Any] | None, path: Path) -> None:
        """A checkpoint resumes only into the same architecture: compare its stored ``model`` section."""
        if not stored or "model" not in stored:
            return
        differences = [
            f"model.{key}={stored['model'].get(key)} (config: {getattr(cfg.model, key)})"
            for key in ARCH_FIELDS
            if stored["model"].get(key) != getattr(cfg.model, key)
        ]
        if differences:
            raise ConfigError(
                f"cannot resume from {path}: it was trained with {', '.join(differences)}; "
                "use the same model settings or a new train.out_dir with train.resume=none"
            )

    def write_run_files(self, cfg: Config, tokenizer: Tokenizer) -> None:
        """Write ``config.yaml`` (the resolved config) and ``tokenizer/`` (a copy), each atomically."""
        with atomic_write(self.root / CONFIG_FILE, "w", encoding="utf-8") as f:
            f.write(to_yaml(cfg))
        with atomic_directory(self.root / TOKENIZER_DIR) as tmp:
            tokenizer.save(tmp)

    def save(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, keep_last: int, **extra
    ) -> Path:
        """Write ``checkpoints/step_XXXXXXXX.pt``, point ``latest`` at it and keep the newest ``keep_last``."""
        return ckpt.CheckpointManager(self.root, keep_last=keep_last).save(model, optimizer, step, **extra)
