"""What a run reports: ``metrics.jsonl`` records, the readable stdout line, memory, and optional wandb and TensorBoard.

``MetricsLog`` owns ``metrics.jsonl`` (one JSON object per log or eval step, appended and flushed as it goes;
a resumed run first drops records past the step it resumes from, so the file reads as one uninterrupted run).
``read_metrics`` reads it back strictly (a line that is not a JSON object is an error naming it), skipping only
the torn last line a hard kill leaves; ``scan_metrics`` gives the readable records and the problems instead.
``format_line`` renders a record for people. ``WandbLogger`` mirrors records to Weights & Biases and
``TensorBoardLogger`` to TensorBoard event files, each when enabled and its package is installed (the ``wandb`` and
``tensorboard`` extras). ``RunLog`` puts them together for the main process of a run (and is silent on the
others). Field names are listed in docs/training.md; the MFU denominator lives in ``cs336_lm.training.peak``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cs336_lm.config import WandbConfig
from cs336_lm.errors import DataError, WriteError
from cs336_lm.fileio import atomic_write, os_reason
from cs336_lm.run import RunDir


class MetricsLog:
    """Append-only ``metrics.jsonl``; ``resume_step=None`` starts it afresh, else keeps records up to that step."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        kept = _records_up_to(self.path, resume_step) if resume_step is not None else []
        with atomic_write(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        except OSError as e:
            raise WriteError(self.path, os_reason(e)) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line and flush it, so a crash loses nothing already logged. A full disk is a
        ``WriteError``; the line it tore is the torn last line ``read_metrics`` skips."""
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:
            raise WriteError(self.path, os_reason(e)) from None

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file, in order ([] when there is no such file). The torn last line a hard
    kill leaves (no newline after it) is skipped; any other line that is not a UTF-8 JSON object is a
    ``DataError`` naming the file and the line."""
    records, problems = scan_metrics(path)
    if problems:
        raise DataError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return records


def scan_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``(records, problems)``: the JSON objects of a ``metrics.jsonl`` file in order, and one message per other
    line (``line 7 is not UTF-8 text``, ``line 9 is a JSON list, not an object``), the torn last line aside."""
    path = Path(path)
    if not path.is_file():
        return [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    torn_last = not data.endswith(b"\n")
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        problem = None
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            problem = f"line {number} is not UTF-8 text"
        except json.JSONDecodeError:
            problem = f"line {number} is not JSON"
        else:
            if isinstance(record, dict):
                records.append(record)
            else:
                problem = f"line {number} is a JSON {_json_kind(record)}, not an object"
        if problem and not (torn_last and number == len(lines)) and raw.strip():
            problems.append(problem)
    return records, problems


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _records_up_to(path: Path, step: int) -> list[dict[str, Any]]:
    """Records with a ``step`` up to ``step``: what an uninterrupted run would have logged so far. Lines that are
    not records (damaged by hand or by the disk) are dropped with a warning naming them."""
    records, problems = scan_metrics(path)
    kept = [r for r in records if _is_step(r.get("step", 0)) and r.get("step", 0) <= step]
    problems += [f"a record's step is {r['step']!r}" for r in records if not _is_step(r.get("step", 0))]
    if problems:
        warnings.warn(f"{path}: dropped what is not a metrics record: {'; '.join(problems[:3])}", stacklevel=3)
    return kept


def _is_step(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class StepWindow:
    """Loss and step time accumulated since the last log line; ``take`` returns them and starts afresh."""

    def __init__(self) -> None:
        self.steps, self.loss_sum, self.timed_steps, self.seconds = 0, 0.0, 0, 0.0
        self.first_loss: float | None = None  # the run's first step's loss: where divergence is measured from

    def add(self, loss: float, seconds: float, timed: bool = True) -> None:
        """Count one step; ``timed=False`` leaves its time out of the throughput (e.g. the compile step)."""
        if self.first_loss is None:
            self.first_loss = loss
        self.steps += 1
        self.loss_sum += loss
        if timed:
            self.timed_steps += 1
            self.seconds += seconds

    def take(self) -> tuple[int, float, int, float]:
        """``(steps, loss_sum, timed_steps, seconds)`` since the last call."""
        result = (self.steps, self.loss_sum, self.timed_steps, self.seconds)
        self.steps, self.loss_sum, self.timed_steps, self.seconds = 0, 0.0, 0, 0.0
        return result

    def state_dict(self) -> dict[str, Any]:
        """The losses so far, ``{"steps": 3, "loss_sum": 12.5}``: what a checkpoint keeps, so that the record after
        a resume averages the same steps as an uninterrupted run (step times belong to one process: not kept), and the
        first step's loss, which the divergence check measures from."""
        return {"steps": self.steps, "loss_sum": self.loss_sum, "first_loss": self.first_loss}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> StepWindow:
        """A window holding the losses of ``state`` (None, from a checkpoint written before windows were saved:
        an empty window, so the first record after the resume averages only the steps since)."""
        window = cls()
        if state is not None:
            window.steps, window.loss_sum = int(state["steps"]), float(state["loss_sum"])
            window.first_loss = state.get("first_loss")
        return window


def format_line(record: dict[str, Any], max_steps: int) -> str:
    """One readable line, e.g. ``step   100/1000 | loss 4.1234 | lr 3.00e-04 | grad 0.98 | 51.2k tok/s | …``."""
    width = len(str(max_steps))
    parts = [f"step {record['step']:>{width}}/{max_steps}"]
    if "loss" in record:
        parts.append(f"loss {record['loss']:.4f}")
    if "val_loss" in record:
        parts.append(f"val_loss {record['val_loss']:.4f} | val_ppl {record['val_ppl']:.2f}")
    if "lr" in record:
        parts.append(f"lr {record['lr']:.2e}")
    if "grad_norm" in record:
        parts.append(f"grad {record['grad_norm']:.3f}")
    if "tokens_per_s" in record:
        parts.append(f"{_si(record['tokens_per_s'])} tok/s")
    if record.get("mfu") is not None:
        parts.append(f"mfu {100 * record['mfu']:.1f}%")
    if "loss_scale" in record:
        parts.append(f"scale {record['loss_scale']:g}")
    if record.get("skipped_steps"):
        parts.append(f"skipped {record['skipped_steps']}")
    if "memory_gb" in record:
        parts.append(f"mem {record['memory_gb']:.2f} GB")
    if "wall_time_s" in record:
        parts.append(f"{record['wall_time_s']:.1f}s")
    return " | ".join(parts)


def _si(x: float) -> str:
    """``51234.0`` -> ``51.2k``; ``1.5e6`` -> ``1.50M``."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats); ``inf`` past float range instead of an OverflowError."""
    return math.exp(loss) if loss < 700 else math.inf


def memory_gb(device: torch.device) -> float:
    """Peak memory in GB: allocated CUDA memory on a GPU, the process's peak resident set elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


class WandbLogger:
    """Mirror metric records to wandb when ``enabled`` and installed; otherwise do nothing.

    ``run_id`` is kept in checkpoints so a resumed run continues the same wandb run. wandb's own files go under
    ``directory`` (``RUN/wandb/``) unless ``WANDB_DIR`` says otherwise; ``WANDB_MODE=offline`` logs without a
    network (``wandb sync`` uploads later).
    """

    def __init__(
        self,
        enabled: bool,
        *,
        project: str,
        entity: str | None,
        name: str,
        config: dict,
        run_id=None,
        directory: Path | None = None,
    ):
        self.run = None
        self.run_id = run_id
        if not enabled:
            return
        try:
            import wandb
        except ImportError:
            message = (
                "train.wandb.enabled=true but wandb is not installed (pip install wandb); logging to metrics.jsonl only"
            )
            warnings.warn(message, stacklevel=2)
            return
        where = str(directory) if directory is not None and "WANDB_DIR" not in os.environ else None
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
            dir=where,
        )
        self.run_id = self.run.id

    def log(self, record: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


class TensorBoardLogger:
    """Mirror the numeric fields of metric records to TensorBoard event files in ``directory`` when ``enabled``.

    Tags are ``train/<field>`` for training records and ``eval/<field>`` for evaluation records, at
    ``global_step = record["step"]``. A resumed run (``resume_step``) opens its writer with ``purge_step =
    resume_step + 1``, so TensorBoard hides what a killed run had logged past its last checkpoint, as
    ``MetricsLog`` drops those records. Without the ``tensorboard`` package: one warning, then nothing.
    """

    def __init__(self, enabled: bool, directory: Path, resume_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            message = (
                "train.tensorboard=true but the tensorboard package is not installed (pip install tensorboard); "
                "logging to metrics.jsonl only"
            )
            warnings.warn(message, stacklevel=2)
            return
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(directory), purge_step=purge)

    def log(self, record: dict[str, Any]) -> None:
        """Write every int/float field but ``step`` as a scalar, then flush (a crash loses nothing logged)."""
        if self.writer is None:
            return
        group = "eval" if "val_loss" in record else "train"
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, global_step=record["step"])
        self.writer.flush()

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()


class RunLog:
    """Where a run reports: ``metrics.jsonl``, wandb, TensorBoard and stdout lines for people; every method is a
    no-op on the processes that are not the main one (``RunLog.silent()``)."""

    def __init__(
        self,
        metrics: MetricsLog | None,
        wandb: WandbLogger | None,
        max_steps: int,
        tensorboard: TensorBoardLogger | None = None,
    ):
        self.metrics, self.wandb, self.tensorboard, self.max_steps = metrics, wandb, tensorboard, max_steps

    @classmethod
    def open(
        cls,
        run_dir: RunDir,
        *,
        resume_step: int | None,
        wandb: WandbConfig,
        tensorboard: bool,
        name: str,
        config: dict,
        run_id: str | None,
        max_steps: int,
    ) -> RunLog:
        """Open ``run_dir``'s metrics.jsonl (keeping records up to ``resume_step``) and, when enabled, the wandb
        run and the TensorBoard writer (``run_dir.tensorboard_dir``)."""
        metrics = MetricsLog(run_dir.metrics_file, resume_step=resume_step)
        logger = WandbLogger(
            wandb.enabled,
            project=wandb.project,
            entity=wandb.entity,
            name=name,
            config=config,
            run_id=run_id,
            directory=run_dir.root,
        )
        board = TensorBoardLogger(tensorboard, run_dir.tensorboard_dir, resume_step=resume_step)
        return cls(metrics, logger, max_steps, board)

    @classmethod
    def silent(cls) -> RunLog:
        return cls(None, None, 0)

    @property
    def run_id(self) -> str | None:
        """The wandb run id, kept in checkpoints so that a resumed run continues the same wandb run."""
        return self.wandb.run_id if self.wandb is not None else None

    def record(self, record: dict[str, Any]) -> None:
        """Append ``record`` to metrics.jsonl, send it to wandb and TensorBoard and print its readable line."""
        if self.metrics is None:
            return
        self.metrics.write(record)
        for sink in (self.wandb, self.tensorboard):
            if sink is not None:
                sink.log(record)
        self.say(format_line(record, self.max_steps))

    def say(self, message: str) -> None:
        """Print a line for people without breaking the progress bar."""
        if self.metrics is not None and message:
            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        for sink in (self.wandb, self.tensorboard):
            if sink is not None:
                sink.finish()
