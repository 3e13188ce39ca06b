"""Setting a training run up: everything the loop needs, built once from the config and declared in one place.

``setup(cfg)`` reads top to bottom: which process this is and on what device and dtype it computes, with how many
CPU threads and whether deterministically; the inputs, the run directory, the model and the batch sampler (and,
when resuming, the checkpoint's weights, RNG and sampler states), checked on every rank before anything is
written; the DDP/FSDP wrapping and ``torch.compile``; the optimizer (and its saved state) and the fp16 loss scaler
(and its saved state); the peak FLOP/s behind MFU; the run files. The result is a ``TrainingRun`` whose fields are
the whole state the loop (``cs336_lm.training.trainer``) reads. ``Progress`` is the part that advances with every
step and is saved with every checkpoint. A resume starts from the newest checkpoint that verifies
(``RunDir.load_resume``), warning about any damaged one it passed over; a run directory that ``setup`` created is
removed again when setting up fails.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cs336_lm.config import Config, model_from_dict
from cs336_lm.errors import CheckpointError, ConfigError, UnverifiedCheckpointWarning
from cs336_lm.nn import TransformerLM
from cs336_lm.run import ResumePoint, RunDir, apply_checkpoint, build_model, read_checkpoint, restore_rng_state
from cs336_lm.run.malloc import reuse_freed_memory
from cs336_lm.run.threads import ThreadChoice, choose_threads
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training import parallel
from cs336_lm.training.build import (
    batch_generator,
    build_optimizer,
    lr_scales,
    seed_everything,
    training_flops_per_token,
)
from cs336_lm.training.inputs import Inputs, check_inputs
from cs336_lm.training.metrics import StepWindow
from cs336_lm.training.peak import Peak, peak_for
from cs336_lm.training.runtime import (
    ProcessInfo,
    make_deterministic,
    process_info,
    select_dtype,
    should_compile,
    training_device,
)
from cs336_lm.training.scaler import LossScaler


@dataclass
class Progress:
    """What advances as the run trains and every checkpoint carries besides weights, optimizer and RNG states."""

    step: int = 0
    """Optimizer steps completed."""
    prior_time_s: float = 0.0
    """Training seconds of the earlier segments of a resumed run."""
    wandb_run_id: str | None = None
    """The wandb run this run logs to, so a resumed run continues it."""
    window: StepWindow = field(default_factory=StepWindow)
    """The training losses since the last metrics record (``log_window`` in a checkpoint), so that the first
    record after a resume averages the same steps as in a run that never stopped."""


@dataclass
class TrainingRun:
    """A run ready to train, as ``setup`` built it."""

    cfg: Config
    proc: ProcessInfo
    device: torch.device
    dtype: torch.dtype
    """The autocast compute dtype (``torch.float32``: no autocast)."""
    inputs: Inputs
    run_dir: RunDir
    model: TransformerLM
    """The unwrapped model (FSDP shards it in place): clipping and checkpoints read its parameters."""
    wrapped: nn.Module
    """DDP or FSDP around ``model`` (``model`` itself in one process): gradient sync is switched on it."""
    forward: Any
    """What a step calls: ``wrapped``, or ``torch.compile(wrapped)`` when ``compiled``."""
    compiled: bool
    sharded: bool
    """FSDP: parameters, gradients and optimizer state are sharded DTensors."""
    optimizer: torch.optim.Optimizer
    """``AdamW``, or ``Muon`` with its AdamW groups (``optim.name``), as ``build_optimizer`` made it."""
    lr_scales: list[float]
    """Each optimizer group's peak rate over ``optim.lr`` (``build.lr_scales``; 1.0 for every AdamW group)."""
    scaler: LossScaler
    """Dynamic loss scaling, enabled for fp16 (a no-op otherwise); its state is saved with every checkpoint."""
    threads: ThreadChoice
    """torch's intra-op CPU threads for this run, and why."""
    reuse_memory: bool
    """Whether freed CPU memory is kept for reuse (``train.reuse_cpu_memory``, glibc only)."""
    peak: Peak | None
    """One device's peak FLOP/s for MFU (main process only; the others log nothing)."""
    sampler: np.random.Generator
    """This rank's batch sampler."""
    progress: Progress
    resumed_from: Path | None
    """The checkpoint the run continues from, or None for a fresh run."""
    flops_per_token: float
    """Training matmul FLOPs per token, for MFU."""
    notes: list[str] = field(default_factory=list)
    """Lines for the opening message (e.g. samplers re-derived on another world size)."""

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step over all ranks."""
        t = self.cfg.train
        return t.batch_size * t.grad_accum_steps * self.cfg.model.context_length * self.proc.world_size


@dataclass
class _Loaded:
    """What every rank loads before the first collective: checked inputs, the model and its checkpoint."""

    inputs: Inputs
    run_dir: RunDir
    model: TransformerLM
    sampler: np.random.Generator
    progress: Progress
    checkpoint: dict[str, Any] | None
    resumed_from: Path | None
    notes: list[str]


def setup(cfg: Config) -> TrainingRun:
    """Everything a run needs, in order (see the module docstring); nothing is written before all is checked, and
    a run directory created here is removed again if anything fails before the run files are written."""
    run_dir = RunDir(cfg.train.out_dir)
    try:
        return _setup(cfg, run_dir)
    except BaseException:
        run_dir.remove_if_unused()
        raise


def _setup(cfg: Config, run_dir: RunDir) -> TrainingRun:
    proc = process_info(cfg.train.parallel)
    device = training_device(cfg.train.device, proc)
    parallel.init_process_group(proc, device)
    dtype = select_dtype(cfg.train.dtype, device)
    compiled = should_compile(cfg.train.compile, device)
    deterministic_cpu = cfg.train.deterministic and device.type == "cpu"
    # auto never exceeds torch's own count (its default: the physical cores, or OMP_NUM_THREADS)
    threads = choose_threads(cfg.train.threads, deterministic_cpu=deterministic_cpu, ceiling=torch.get_num_threads())
    torch.set_num_threads(threads.count)
    reuse_memory = cfg.train.reuse_cpu_memory and device.type == "cpu" and reuse_freed_memory()
    if cfg.train.deterministic:
        make_deterministic(device, compiled)
    # every rank checks its inputs and the checkpoint; all go on or all stop, before any file is written
    loaded = parallel.on_every_rank(partial(_load, cfg, proc, device, run_dir), proc)
    wrapped = parallel.wrap(loaded.model, cfg.train.parallel, device)
    optimizer = build_optimizer(loaded.model, cfg, dtype)  # after wrapping: FSDP replaces the parameters
    scales = lr_scales(optimizer, cfg)  # before a checkpoint's groups replace the config's rates
    scaler = LossScaler(enabled=dtype == torch.float16)
    if loaded.checkpoint is not None:
        saved, name = loaded.checkpoint.get("optimizer"), str(loaded.resumed_from)
        parallel.on_every_rank(partial(parallel.load_optimizer_state, optimizer, saved, name), proc)
        if scaler.enabled and loaded.checkpoint.get("loss_scaler"):  # else (another dtype before) start afresh
            scaler.load_state_dict(loaded.checkpoint["loss_scaler"])
    if proc.is_main:
        loaded.run_dir.write_run_files(cfg, loaded.inputs.tokenizer)
    return TrainingRun(
        cfg=cfg,
        proc=proc,
        device=device,
        dtype=dtype,
        inputs=loaded.inputs,
        run_dir=loaded.run_dir,
        model=loaded.model,
        wrapped=wrapped,
        forward=torch.compile(wrapped) if compiled else wrapped,
        compiled=compiled,
        sharded=parallel.active() and cfg.train.parallel == "fsdp",
        optimizer=optimizer,
        lr_scales=scales,
        scaler=scaler,
        threads=threads,
        reuse_memory=reuse_memory,
        peak=peak_for(device, dtype) if proc.is_main else None,
        sampler=loaded.sampler,
        progress=loaded.progress,
        resumed_from=loaded.resumed_from,
        flops_per_token=training_flops_per_token(cfg),
        notes=loaded.notes,
    )


def _load(cfg: Config, proc: ProcessInfo, device: torch.device, run_dir: RunDir) -> _Loaded:
    """Check the inputs, open the run directory, build the model and apply the checkpoint's weights, RNG and
    sampler states (its optimizer state follows once the model is wrapped)."""
    inputs = check_inputs(cfg)
    if proc.is_main:
        run_dir.create()
    point = _resume_point(run_dir, cfg.train.resume, proc)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, device)
    sampler = batch_generator(cfg.train.seed, proc.rank)
    if point is None:
        notes = init_weights(cfg, model, inputs.tokenizer) if cfg.train.init_from else []
        return _Loaded(inputs, run_dir, model, sampler, Progress(), None, None, notes)
    checkpoint, resumed_from = point.checkpoint, point.path
    check_compatible(cfg, checkpoint.get("config"), resumed_from)
    step = apply_checkpoint(checkpoint, model, None, name=str(resumed_from))
    if step > cfg.train.max_steps:
        max_steps = cfg.train.max_steps
        raise ConfigError(f"{resumed_from} is at step {step}, past train.max_steps={max_steps}; raise max_steps")
    restore_rng_state(checkpoint["rng"])
    sampler, notes = _restored_sampler(checkpoint["rng"], cfg.train.seed, proc, step)
    window = StepWindow.from_state_dict(checkpoint.get("log_window"))
    progress = Progress(step, float(checkpoint.get("wall_time_s", 0.0)), checkpoint.get("wandb_run_id"), window)
    return _Loaded(inputs, run_dir, model, sampler, progress, checkpoint, resumed_from, notes)


def _resume_point(run_dir: RunDir, resume: str, proc: ProcessInfo) -> ResumePoint | None:
    """``run_dir.load_resume(resume)``; its warnings (damaged checkpoints passed over, one without a digest) are
    shown by the main process only."""
    with warnings.catch_warnings():
        if not proc.is_main:
            warnings.simplefilter("ignore", UnverifiedCheckpointWarning)
        point = run_dir.load_resume(resume)
    if point is not None and point.skipped and proc.is_main:
        warnings.warn(point.warning(), stacklevel=2)
    return point


def _restored_sampler(rng: dict, seed: int, proc: ProcessInfo, step: int) -> tuple[np.random.Generator, list[str]]:
    """This rank's sampler from the checkpoint when the world size matches, else a fresh stream from ``step``.

    A checkpoint stores every rank's sampler state (``rng["data_by_rank"]``, one process: ``rng["data"]``). On
    another world size those streams do not map onto the ranks, so each rank starts a fresh stream from
    ``(seed, rank, step)``: the run goes on correctly but draws other batches than an uninterrupted one.
    """
    saved = rng.get("data_by_rank") or ({0: rng["data"]} if "data" in rng else {})
    if len(saved) == proc.world_size and proc.rank in saved:
        sampler = batch_generator(seed, proc.rank)
        sampler.bit_generator.state = saved[proc.rank]
        return sampler, []
    note = (
        f"the checkpoint holds batch samplers for {len(saved)} process(es), this run has {proc.world_size}: "
        f"each rank samples afresh from (seed, rank, step={step})"
    )
    return batch_generator(seed, proc.rank, step), [note]


def check_compatible(cfg: Config, stored: dict[str, Any] | None, path: Path) -> None:
    """A checkpoint resumes only into the same architecture and optimizer: compare its stored ``model`` section and
    ``optim.name`` (``adamw`` in a checkpoint from before there was a choice)."""
    differences = shape_differences(cfg, stored)
    if differences:
        raise ConfigError(
            f"cannot resume from {path}: it was trained with {', '.join(differences)}; "
            "use the same model settings or a new train.out_dir with train.resume=none"
        )
    optim = stored.get("optim") if isinstance(stored, dict) else None
    saved = optim.get("name", "adamw") if isinstance(optim, dict) else "adamw"
    if saved != cfg.optim.name:
        raise ConfigError(
            f"cannot resume from {path}: its optimizer state is {saved}'s, the config asks for "
            f"optim.name={cfg.optim.name}; resume with optim.name={saved}, or start a new train.out_dir with "
            f"train.init_from={path} (weights only)"
        )


def shape_differences(cfg: Config, stored: dict[str, Any] | None) -> list[str]:
    """``model.KEY=stored (config: ours)`` for each shape field a checkpoint's stored config differs in (the defaults
    of fields added since it was written filled in); empty when it stores no model config."""
    if not stored or not isinstance(stored.get("model"), dict):
        return []
    ours = cfg.model.args.architecture()
    try:
        saved = model_from_dict(stored["model"]).args.architecture()
    except (ConfigError, ValueError):
        saved = stored["model"]
    return [f"model.{key}={saved.get(key)} (config: {value})" for key, value in ours.items() if saved.get(key) != value]


def init_weights(cfg: Config, model: TransformerLM, tokenizer: Tokenizer) -> list[str]:
    """``train.init_from``: copy the weights of a run directory (its latest checkpoint), a checkpoint file or an
    imported run into ``model``; the optimizer, step and RNG stay fresh. The source must have this config's model
    shape and, when its run directory holds a tokenizer, the same tokenizer as ``data.tokenizer_dir``; its chat
    template carries over when ``data.tokenizer_dir`` has none."""
    source = f"train.init_from={cfg.train.init_from}"
    try:
        path, run = RunDir.locate(str(cfg.train.init_from))
    except CheckpointError as e:
        raise ConfigError(f"{source}: {e}") from None
    checkpoint = read_checkpoint(path)
    differences = shape_differences(cfg, checkpoint.get("config"))
    if differences:
        raise ConfigError(f"{source} has another model shape: {', '.join(differences)}")
    apply_checkpoint(checkpoint, model, None, name=f"{source} ({path})")
    notes = [f"initialised from {path} (its step {checkpoint['iteration']}): weights only, optimizer and step fresh"]
    if run.tokenizer_dir.is_dir():
        theirs = Tokenizer.from_directory(run.tokenizer_dir)
        if not _same_tokenizer(theirs, tokenizer):
            raise ConfigError(
                f"{source} was trained with another tokenizer ({run.tokenizer_dir}) than data.tokenizer_dir "
                f"{cfg.data.tokenizer_dir}: tokenize the data with {run.tokenizer_dir}"
            )
        if tokenizer.chat_template is None and theirs.chat_template is not None:  # the run's tokenizer/ gets it
            tokenizer.chat_template, tokenizer.named_tokens = theirs.chat_template, theirs.named_tokens
            notes.append(f"the chat template of {run.tokenizer_dir} carried into this run's tokenizer")
    return notes


def _same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    return (a.vocab, a.merges, a.special_tokens) == (b.vocab, b.merges, b.special_tokens)
