"""The run directory (``train.out_dir``): the one place that knows what is in it and where.

Layout (DESIGN.md)::

    RUN/config.yaml                      the resolved config of the run
    RUN/tokenizer/                       a copy of the tokenizer, so RUN alone is enough to generate
    RUN/metrics.jsonl                    one JSON record per log or evaluation step
    RUN/checkpoints/step_XXXXXXXX.pt     checkpoints (``cs336_lm.run.checkpoint`` owns the file format)
    RUN/checkpoints/latest               the name of the newest complete checkpoint

``RunDir`` answers every question about that layout: which checkpoints exist and which is the latest, where the
next one goes, which to keep, what ``train.resume`` points at, and which run a loose checkpoint file belongs to
(``RunDir.locate``). Writes go through ``cs336_lm.fileio``, so none is ever left half-done.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from cs336_lm.config import Config, to_yaml
from cs336_lm.errors import CheckpointError, ConfigError, WriteError
from cs336_lm.fileio import atomic_directory, atomic_write, make_directories, os_reason, remove_empty
from cs336_lm.run.checkpoint import Snapshot, save_checkpoint
from cs336_lm.tokenizer import Tokenizer

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TOKENIZER_DIR = "tokenizer"
CHECKPOINTS_DIR = "checkpoints"
LATEST_POINTER = "latest"
_STEP_FILE = re.compile(r"step_(\d{8,})\.pt")


def step_of(path: Path) -> int | None:
    """The step in a checkpoint file name, ``step_00000100.pt`` -> 100; None for any other name."""
    match = _STEP_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else None


class RunDir:
    """The paths of one run directory and what can be asked of them; the constructor touches nothing on disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.config_file = self.root / CONFIG_FILE
        self.metrics_file = self.root / METRICS_FILE
        self.tokenizer_dir = self.root / TOKENIZER_DIR
        self.checkpoints_dir = self.root / CHECKPOINTS_DIR
        self.created: list[Path] = []  # the directories ``create`` made, outermost first

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # ---- reading ------------------------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:08d}.pt"

    def checkpoints(self) -> list[Path]:
        """``checkpoints/step_XXXXXXXX.pt`` files, oldest step first (temporary files are ignored)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if step_of(p) is not None and p.is_file()]
        return sorted(found, key=lambda p: step_of(p) or 0)

    def latest(self) -> Path | None:
        """The checkpoint ``checkpoints/latest`` names; if that pointer is missing or stale, the highest-step
        checkpoint file; None when the run has none."""
        pointer = self.checkpoints_dir / LATEST_POINTER
        if pointer.is_file():
            target = self.checkpoints_dir / pointer.read_text(encoding="utf-8").strip()
            if step_of(target) is not None and target.parent == self.checkpoints_dir and target.is_file():
                return target
        found = self.checkpoints()
        return found[-1] if found else None

    @classmethod
    def locate(cls, path: str | os.PathLike) -> tuple[Path, RunDir]:
        """``(checkpoint file, its run directory)`` for a run directory (its latest checkpoint) or a checkpoint file
        (whose run directory is ``FILE.parent.parent``, where ``lm-train`` puts it)."""
        path = Path(path)
        if path.is_dir():
            run = cls(path)
            found = run.latest()
            if found is None:
                raise CheckpointError(
                    f"{path} holds no checkpoint (expected checkpoints/latest or checkpoints/step_*.pt in a run "
                    "directory)"
                )
            return found, run
        if path.is_file():
            return path, cls(path.resolve().parent.parent)
        raise CheckpointError(f"{path} does not exist: give a run directory or a checkpoint file")

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
            found = RunDir(path).latest()
            if found is None:
                raise ConfigError(f"train.resume={resume}: that directory holds no checkpoint")
            return found
        if not path.is_file():
            raise ConfigError(f"train.resume={resume}: no such checkpoint file (use auto, none or a .pt path)")
        return path

    # ---- writing ------------------------------------------------------------------------------------------

    def create(self) -> RunDir:
        """Create the directory if needed and prove a file can be written in it; refuse a directory whose layout
        has a file where a directory goes or the reverse (``ConfigError`` either way). The directories made are
        remembered in ``created`` for ``remove_if_unused``."""
        try:
            self.created = make_directories(self.root)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except (WriteError, OSError) as e:
            remove_empty(self.created)
            reason = e.reason if isinstance(e, WriteError) else os_reason(e)
            raise ConfigError(f"train.out_dir {self.root} is not a writable directory ({reason})") from None
        is_directory = {
            self.config_file: False,
            self.metrics_file: False,
            self.checkpoints_dir: True,
            self.checkpoints_dir / LATEST_POINTER: False,
        }
        for path, is_dir in is_directory.items():
            if path.exists() and path.is_dir() != is_dir:
                found, expected = ("file", "directory") if is_dir else ("directory", "file")
                raise ConfigError(
                    f"{path} is a {found} where a run directory holds a {expected}; move it away or choose another "
                    "train.out_dir"
                )
        return self

    def remove_if_unused(self) -> None:
        """Remove the directories ``create`` made, as long as nothing was written into them (a run that failed to
        start leaves nothing behind)."""
        remove_empty(self.created)
        self.created = []

    def write_run_files(self, cfg: Config, tokenizer: Tokenizer) -> None:
        """Write ``config.yaml`` (the resolved config) and ``tokenizer/`` (a copy), each atomically."""
        with atomic_write(self.config_file, "w", encoding="utf-8") as f:
            f.write(to_yaml(cfg))
        with atomic_directory(self.tokenizer_dir) as tmp:
            tokenizer.save(tmp)

    def save_checkpoint(
        self,
        model: torch.nn.Module | Snapshot,
        optimizer: torch.optim.Optimizer | Snapshot | None,
        step: int,
        keep_last: int | None,
        **extra,
    ) -> Path:
        """Write ``checkpoints/step_XXXXXXXX.pt``, then point ``latest`` at it, then keep the newest ``keep_last``
        (None keeps all). A crash at any moment leaves ``latest`` naming a complete checkpoint; a full disk is a
        ``WriteError`` that leaves the earlier checkpoints as they were."""
        make_directories(self.checkpoints_dir)
        for stale in self.checkpoints_dir.glob(".step_*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        path = self.checkpoint_path(step)
        save_checkpoint(model, optimizer, step, path, **extra)
        with atomic_write(self.checkpoints_dir / LATEST_POINTER, "w", encoding="utf-8") as f:
            f.write(path.name + "\n")
        self.prune(keep_last)
        return path

    def prune(self, keep_last: int | None) -> None:
        """Delete all but the newest ``keep_last`` checkpoints, never the one ``latest`` points at."""
        if keep_last is None:
            return
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        keep = self.latest()
        for path in self.checkpoints()[:-keep_last]:
            if path != keep:
                path.unlink(missing_ok=True)
