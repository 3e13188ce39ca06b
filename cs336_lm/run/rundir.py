"""The run directory (``train.out_dir``): the one place that knows what is in it and where.

Layout (DESIGN.md)::

    RUN/config.yaml                      the resolved config of the run
    RUN/tokenizer/                       a copy of the tokenizer, so RUN alone is enough to generate; a chat
                                         model's also holds chat_template.jinja and special_tokens_map.json
    RUN/metrics.jsonl                    one JSON record per log or evaluation step
    RUN/tensorboard/                     TensorBoard event files (``train.tensorboard: true``)
    RUN/wandb/                           wandb's local files (``train.wandb.enabled: true``, unless WANDB_DIR is set)
    RUN/checkpoints/step_XXXXXXXX.pt     checkpoints (``cs336_lm.run.checkpoint`` owns the file format)
    RUN/checkpoints/latest               the name of the newest complete checkpoint

``RunDir`` answers every question about that layout: which checkpoints exist and which is the latest, where the
next one goes, which to keep, what ``train.resume`` starts from, and which run a loose checkpoint file belongs to
(``RunDir.locate``). Writes go through ``cs336_lm.fileio``, so none is ever left half-done.

Checkpoints are verified against their digest whenever they are read (``cs336_lm.run.checkpoint``). A resume
(``load_resume``) passes over damaged ones to the newest that verifies and says which it passed over; rotation
(``prune``) reads the newest kept checkpoint back and never deletes the newest one that verifies.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cs336_lm.config import Config, to_yaml
from cs336_lm.errors import CheckpointError, ConfigError, DamagedCheckpointError, WriteError
from cs336_lm.fileio import atomic_directory, atomic_write, make_directories, os_reason, remove_empty
from cs336_lm.run.checkpoint import Snapshot, read_checkpoint, save_checkpoint, verify_checkpoint
from cs336_lm.tokenizer import Tokenizer

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TOKENIZER_DIR = "tokenizer"
CHECKPOINTS_DIR = "checkpoints"
LATEST_POINTER = "latest"
_STEP_FILE = re.compile(r"step_(\d{8,})\.pt")


def step_of(path: Path) -> int | None:
    """The step in a checkpoint file name, ``step_00000100.pt`` -> 100; None for any other name."""
    match = _STEP_FILE.fullmatch(path.name)
    return int(match.group(1)) if match else None


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, read and verified, and the newer ones a resume passed over."""

    path: Path
    checkpoint: dict[str, Any]
    skipped: list[str] = field(default_factory=list)
    """Why each newer checkpoint was passed over, one message each (``… is damaged: …``), newest first."""

    def warning(self) -> str:
        """The line naming the checkpoints passed over and the one resumed from (empty when none was passed over)."""
        if not self.skipped:
            return ""
        return f"{'; '.join(self.skipped)}; resuming from {self.path}, the newest checkpoint that verifies"


class RunDir:
    """The paths of one run directory and what can be asked of them; the constructor touches nothing on disk."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.config_file = self.root / CONFIG_FILE
        self.metrics_file = self.root / METRICS_FILE
        self.tensorboard_dir = self.root / TENSORBOARD_DIR
        self.tokenizer_dir = self.root / TOKENIZER_DIR
        self.checkpoints_dir = self.root / CHECKPOINTS_DIR
        self.created: list[Path] = []  # the directories ``create`` made, outermost first

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # ---- reading ------------------------------------------------------------------------------------------

    def read_paths(self) -> list[Path]:
        """What a command that loads this run reads: its config, metrics, tokenizer and checkpoints. An output must
        be none of these and lie inside none of them (``fileio.check_apart``); a new file in the run is fine."""
        return [self.config_file, self.metrics_file, self.tokenizer_dir, self.checkpoints_dir]

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
        try:
            target = self.checkpoints_dir / pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):  # missing, unreadable or garbled: fall back to the file names
            target = self.checkpoints_dir
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

    def resume_candidates(self) -> list[Path]:
        """The checkpoints a resume may start from, best first: the one ``latest`` names, then older ones by step."""
        latest = self.latest()
        if latest is None:
            return []
        newest = step_of(latest) or 0
        return [latest, *(p for p in reversed(self.checkpoints()) if (step_of(p) or 0) < newest)]

    def load_resume(self, resume: str) -> ResumePoint | None:
        """The checkpoint ``train.resume`` starts from, read and verified; None to start fresh.

        ``none``: None, refusing a directory that already holds a run. ``auto``: this run's newest checkpoint that
        verifies (None when it has none). A run directory: that run's newest that verifies. A file: that file, and
        nothing else. When no checkpoint of a run verifies, the error names each and why.
        """
        if resume == "none":
            latest = self.latest()
            if latest is not None:
                raise ConfigError(
                    f"train.out_dir {self.root} already holds a run (latest checkpoint {latest.name}); "
                    "continue it with train.resume=auto or choose a new train.out_dir"
                )
            return None
        if resume == "auto":
            return _newest_intact(self.resume_candidates())
        path = Path(resume)
        if path.is_dir():
            candidates = RunDir(path).resume_candidates()
            if not candidates:
                raise ConfigError(f"train.resume={resume}: that directory holds no checkpoint")
            return _newest_intact(candidates)
        if not path.is_file():
            raise ConfigError(f"train.resume={resume}: no such checkpoint file (use auto, none or a .pt path)")
        return ResumePoint(path, read_checkpoint(path))

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
        """Delete all but the newest ``keep_last`` checkpoints, never the one ``latest`` points at, and never the
        newest checkpoint that verifies.

        Before deleting anything, the kept checkpoints are read back, newest first, until one verifies (usually
        the one just written: one read). When none does, the newest older one that verifies is kept as well, with
        a warning.
        """
        if keep_last is None:
            return
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
        found = self.checkpoints()
        doomed, kept = found[:-keep_last], found[-keep_last:]
        if not doomed:
            return
        problems = []
        for path in reversed(kept):
            problem = _verification_problem(path)
            if problem is None:
                break
            problems.append(problem)
        else:
            good = next((p for p in reversed(doomed) if _verification_problem(p) is None), None)
            if good is not None:
                doomed.remove(good)
                warnings.warn(
                    f"{'; '.join(problems)}; keeping {good}, the newest checkpoint that verifies", stacklevel=2
                )
        keep = self.latest()
        for path in doomed:
            if path != keep:
                try:
                    path.unlink(missing_ok=True)
                except OSError as e:
                    warnings.warn(f"could not remove the old checkpoint {path}: {os_reason(e)}", stacklevel=2)


def _verification_problem(path: Path) -> str | None:
    """Why the checkpoint at ``path`` does not verify, or None when it does."""
    try:
        verify_checkpoint(path)
    except CheckpointError as e:
        return str(e)
    return None


def _newest_intact(candidates: list[Path]) -> ResumePoint | None:
    """The first of ``candidates`` that reads and verifies, with the damaged ones before it; None for no candidates.

    Only damage (a torn file, a digest mismatch) is passed over; a file that is not a cs336_lm checkpoint of this
    version stops the resume, since going back past it would silently drop newer training.
    """
    skipped: list[str] = []
    for path in candidates:
        try:
            return ResumePoint(path, read_checkpoint(path), skipped)
        except DamagedCheckpointError as e:
            skipped.append(str(e))
    if not candidates:
        return None
    raise DamagedCheckpointError(
        f"no checkpoint in {candidates[0].parent} can be resumed from: {'; '.join(skipped)}. "
        "Move them away to start the run afresh"
    )
