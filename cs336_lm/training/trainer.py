"""The training loop: steps, evaluation, logging and checkpoints over a run that ``setup`` built.

``train(cfg)`` builds a ``Trainer`` and runs it. One optimizer step is ``grad_accum_steps`` micro-batches (forward
under bf16/fp16 autocast where chosen, loss, backward), then clipping, the scheduled learning rate (each optimizer
group's peak rate times the schedule's factor) and an AdamW or Muon update. In fp16 the loss is multiplied by the
loss scaler's scale before ``backward`` and the gradients are divided by it before clipping; a step whose gradients
overflowed is skipped (``cs336_lm.training.scaler``). Every ``log_every`` steps a metrics record goes to stdout and
``metrics.jsonl``; every ``eval_every`` steps the validation loss is measured on fixed windows; every ``ckpt_every``
steps (and at the end, or on SIGINT/SIGTERM) a checkpoint is written. A checkpoint carries the model, optimizer,
loss scaler, step, config, the Python/NumPy/torch RNG states and the batch sampler's state, so a resumed run
continues bitwise as if it had never stopped (on a CPU with one thread or ``train.deterministic``; docs/training.md
says exactly when). Under torchrun (``train.parallel: ddp | fsdp``, ``cs336_lm.training.parallel``) every rank draws
its own batches (``batch_generator(seed, rank)``), the loss, the stop request and the overflow flag are all-reduced
each step so all ranks log the same value, skip the same steps and stop at the same step, evaluation is sharded over
the ranks and reduced, and the main process alone prints and writes files; checkpoints hold the whole unwrapped
state and every rank's sampler.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from cs336_lm.config import Config, summary, to_dict
from cs336_lm.data import get_batch, iter_eval_batches
from cs336_lm.errors import LMError, NonFiniteLossError, WriteError
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.run import Snapshot, capture_rng_state
from cs336_lm.training import parallel
from cs336_lm.training.build import batch_generator, describe_optimizer, lr_at
from cs336_lm.training.divergence import loss_rise_error, loss_rose
from cs336_lm.training.metrics import RunLog, memory_gb, perplexity
from cs336_lm.training.peak import mfu
from cs336_lm.training.runtime import GracefulStop, autocast, preserved_torch_settings
from cs336_lm.training.setup import TrainingRun, setup

__all__ = ["TrainResult", "Trainer", "batch_generator", "lr_at", "train"]


@dataclass
class TrainResult:
    """How a run ended: the last completed step, why it stopped and the last losses measured."""

    out_dir: Path
    step: int
    stopped_by: str | None  # the signal name when SIGINT/SIGTERM ended the run early, else None
    train_loss: float | None
    val_loss: float | None


def train(cfg: Config) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring. Leaves the process group on exit
    and puts torch's thread count and deterministic mode back as they were."""
    with parallel.process_group_session(), preserved_torch_settings():
        return Trainer(cfg).run()


class Trainer:
    """Advances one run step by step. ``self.job`` is the run as ``setup`` built it; the attributes below are the
    loop's own bookkeeping."""

    def __init__(self, cfg: Config):
        self.job: TrainingRun = setup(cfg)
        self.log = RunLog.silent()  # metrics.jsonl, wandb and stdout once ``run`` opens them (main process)
        self.window = self.job.progress.window  # losses (kept in checkpoints) and step times since the last record
        self.stop: GracefulStop | None = None  # the SIGINT/SIGTERM handler while ``run`` loops
        self.stop_votes = 0.0  # ranks that had asked to stop by the last step's all-reduce
        self.start_time = time.perf_counter()  # reset when the loop starts
        self.last_saved_step = self.step if self.job.resumed_from is not None else -1
        self.last_val_loss: float | None = None
        self.compile_s: float | None = None  # first-step time with torch.compile, logged once

    @property
    def step(self) -> int:
        """Optimizer steps completed so far."""
        return self.job.progress.step

    @property
    def cfg(self) -> Config:
        return self.job.cfg

    def wall_time(self) -> float:
        """Seconds of training so far, summed over every resumed segment of the run."""
        return self.job.progress.prior_time_s + (time.perf_counter() - self.start_time)

    # ---- one step ----------------------------------------------------------------------------------------

    def train_step(self) -> tuple[float, torch.Tensor]:
        """One optimizer step over ``grad_accum_steps`` micro-batches; returns (mean loss, unscaled pre-clip grad
        norm). A step whose fp16 gradients overflowed on any rank is skipped everywhere: weights and optimizer state
        stay as they were, but the step still counts (its batches are consumed and ``step`` advances)."""
        job, t = self.job, self.cfg.train
        lr = lr_at(self.step, self.cfg)
        for group, scale in zip(job.optimizer.param_groups, job.lr_scales, strict=True):
            group["lr"] = lr * scale  # each group's peak rate, moved by the schedule; AdamW's scale is 1.0
        loss_sum = torch.zeros((), device=job.device)
        for micro in range(t.grad_accum_steps):
            x, y = self.next_batch()  # (batch, seq) each
            with parallel.gradient_sync(job.wrapped, enabled=micro == t.grad_accum_steps - 1):
                with autocast(job.device, job.dtype):
                    loss = cross_entropy(job.forward(x), y)
                job.scaler.scale(loss / t.grad_accum_steps).backward()
            loss_sum += loss.detach()
        params = list(job.model.parameters())
        overflow = job.scaler.unscale_(parallel.local_grads(params)).to(job.device)  # 1.0: inf/nan on this rank
        # one all-reduce: the loss summed over ranks, ranks asked to stop (SIGINT/SIGTERM), ranks that overflowed
        asked = torch.tensor(float(self.stop is not None and self.stop.requested is not None), device=job.device)
        totals = parallel.all_reduce_sum(torch.stack([loss_sum, asked, overflow]))
        loss_total, self.stop_votes, overflows = totals.tolist()
        loss_value = loss_total / (t.grad_accum_steps * job.proc.world_size)
        if not math.isfinite(loss_value):
            job.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at step {self.step + 1}; stopped without saving that state "
                f"(last good checkpoint: {job.run_dir.latest() or 'none'}). Lower optim.lr or raise "
                "optim.warmup_iters, then resume with train.resume=auto"
                + (" (in fp16 an activation may have passed 65504: try train.dtype=fp32)" if job.scaler.enabled else "")
            )
        if job.scaler.update(found_inf=overflows > 0):
            grad_norm = parallel.clip_grad_norm(params, self.cfg.optim.grad_clip or math.inf)
            job.optimizer.step()
        else:
            grad_norm = torch.tensor(math.inf)  # skipped: no norm to clip by, nothing logged for it
        job.optimizer.zero_grad(set_to_none=True)
        job.progress.step += 1
        return loss_value, grad_norm

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A random training batch ``(x, y)``, each (batch_size, context_length), drawn from this rank's sampler."""
        job, t = self.job, self.cfg.train
        context = self.cfg.model.context_length
        return get_batch(job.inputs.train_tokens, t.batch_size, context, job.device, generator=job.sampler)

    def first_step(self) -> tuple[float, torch.Tensor]:
        """The first step, timed apart (it includes ``torch.compile``); a failing compile falls back to eager."""
        job = self.job
        if not job.compiled:
            return self.train_step()
        sampler_state = job.sampler.bit_generator.state
        started = time.perf_counter()
        try:
            result = self.train_step()
        except (LMError, KeyboardInterrupt):
            raise
        except Exception as e:  # any compiler failure: fall back to the eager module
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); training the eager model", stacklevel=2)
            job.optimizer.zero_grad(set_to_none=True)
            job.sampler.bit_generator.state = sampler_state
            job.forward, job.compiled = job.wrapped, False
            return self.train_step()
        self.compile_s = time.perf_counter() - started
        self.log.say(f"compiled the model and ran the first step in {self.compile_s:.1f}s")
        return result

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean cross-entropy over ``eval_batches`` fixed validation batches (the same windows every time).

        With several ranks, rank r evaluates batches r, r + W, … and the sums are all-reduced. Every rank runs
        the same number of forwards (FSDP gathers weights collectively): a rank out of batches repeats the last
        one with weight 0.
        """
        job, t = self.job, self.cfg.train
        total, count = 0.0, 0
        rank, world = job.proc.rank, job.proc.world_size
        job.forward.eval()
        context = self.cfg.model.context_length
        batches = list(iter_eval_batches(job.inputs.val_tokens, t.batch_size, context, t.eval_batches, "cpu"))
        for index in range(rank, -(-len(batches) // world) * world, world):
            x, y = (b.to(job.device) for b in batches[min(index, len(batches) - 1)])  # (batch, seq) each
            with autocast(job.device, job.dtype):
                loss = cross_entropy(job.forward(x), y).item()
            if index < len(batches):
                total, count = total + loss * len(x), count + len(x)
        job.forward.train()
        if parallel.active():
            sums = parallel.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64, device=job.device))
            total, count = sums.tolist()
        return total / count

    # ---- the loop ----------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train from ``self.step`` to ``train.max_steps`` (or until SIGINT/SIGTERM), then save and report."""
        t = self.cfg.train
        self._open_log()
        loss, stopped_by = None, None
        bar = tqdm(total=t.max_steps, initial=self.step, unit="step", dynamic_ncols=True, disable=self._quiet())
        try:
            with GracefulStop() as self.stop, bar:
                first, compiling = True, self.job.compiled  # the first compiled step is timed apart
                while self.step < t.max_steps:
                    started = time.perf_counter()
                    loss, grad_norm = self.first_step() if first else self.train_step()
                    self.window.add(loss, time.perf_counter() - started, timed=not (first and compiling))
                    first = False
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    self._after_step(grad_norm)
                    stopped_by = self._stop_agreed()
                    if stopped_by:
                        break
                if self.step != self.last_saved_step:
                    path = self._save()
                    self.log.say(f"saved checkpoint {path}" if path else "")
        except WriteError as e:  # a full disk: say where the run stands and how to go on
            latest = self.job.run_dir.latest()
            raise WriteError(
                e.path,
                f"{e.reason}; training stopped after step {self.step}, the last checkpoint is {latest or 'none'}: "
                "free some space and run the same command again to resume",
            ) from None
        finally:
            self.stop = None
            self.log.close()
        self._farewell(stopped_by)
        return TrainResult(self.job.run_dir.root, self.step, stopped_by, loss, self.last_val_loss)

    def _quiet(self) -> bool | None:
        """tqdm's ``disable``: None (show it on a terminal) on the main process, True elsewhere."""
        return None if self.job.proc.is_main else True

    def _stop_agreed(self) -> str | None:
        """The reason to stop after this step, decided alike on every rank, or None to go on.

        One process stops as soon as its own signal arrived. Several stop when any rank had been asked to by the
        time of the step's all-reduce (``self.stop_votes``); a signal arriving later counts at the next step.
        """
        assert self.stop is not None
        if not parallel.active():
            return self.stop.requested
        if self.stop_votes > 0:
            return self.stop.requested or "a stop signal (on another rank)"
        return None

    def _after_step(self, grad_norm: torch.Tensor) -> None:
        """Log, evaluate and checkpoint when their cadence (or the last step) says so."""
        t = self.cfg.train
        done = self.step == t.max_steps
        if self.step % t.log_every == 0 or done:
            self._log_train(grad_norm)
        if (t.eval_every and self.step % t.eval_every == 0) or done:
            self._log_eval()
        if t.ckpt_every and self.step % t.ckpt_every == 0 and not done:
            self._save()

    def _log_train(self, grad_norm: torch.Tensor) -> None:
        """Emit a training record over the steps since the last one: mean loss, throughput, memory."""
        job = self.job
        steps, loss_sum, timed_steps, seconds = self.window.take()
        tokens_per_s = timed_steps * job.tokens_per_step / seconds if seconds > 0 else None
        norm = float(grad_norm)
        scaler = job.scaler.state_dict() if job.scaler.enabled else {}
        record = {
            "step": self.step,
            "tokens": self.step * job.tokens_per_step,
            "lr": lr_at(self.step - 1, self.cfg),
            "loss": loss_sum / max(steps, 1),
            "grad_norm": norm if math.isfinite(norm) else None,  # None: the last step was skipped (fp16 overflow)
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(job.flops_per_token, tokens_per_s, job.peak, job.proc.world_size),
            "memory_gb": memory_gb(job.device),
            "wall_time_s": self.wall_time(),
            "compile_s": self.compile_s,
            "loss_scale": scaler.get("scale"),
            "skipped_steps": scaler.get("skipped_steps"),
        }
        self.compile_s = None
        self.log.record({k: v for k, v in record.items() if v is not None})
        first, margin, mean = self.window.first_loss, self.cfg.train.diverge_margin, loss_sum / max(steps, 1)
        if first is not None and loss_rose(mean, first, margin):
            raise loss_rise_error(mean, first, margin, self.step, self.job.run_dir.latest())

    def _log_eval(self) -> None:
        """Emit an evaluation record: validation loss and perplexity on the fixed windows (all ranks evaluate)."""
        self.last_val_loss = self.evaluate()
        record = {"step": self.step, "tokens": self.step * self.job.tokens_per_step, "val_loss": self.last_val_loss}
        self.log.record({**record, "val_ppl": perplexity(self.last_val_loss), "wall_time_s": self.wall_time()})

    def _save(self) -> Path | None:
        """Checkpoint the current step into ``checkpoints/`` (main process only), keeping the last K.

        Every rank takes part: FSDP's state is gathered shard by shard, and each rank's sampler state is collected.
        """
        job = self.job
        self.last_saved_step = self.step
        model_state = parallel.full_model_state(job.model, job.sharded)
        optimizer_state = parallel.full_optimizer_state(job.optimizer, job.sharded)
        samplers = parallel.all_gather(job.sampler.bit_generator.state)
        if not job.proc.is_main:
            return None
        rng = capture_rng_state(job.sampler)
        if parallel.active():
            rng["data_by_rank"] = dict(enumerate(samplers))
        return job.run_dir.save_checkpoint(
            Snapshot(model_state),
            Snapshot(optimizer_state),
            self.step,
            self.cfg.train.keep_last,
            config=to_dict(self.cfg),
            rng=rng,
            wall_time_s=self.wall_time(),
            wandb_run_id=self.log.run_id,
            loss_scaler=job.scaler.state_dict() if job.scaler.enabled else None,
            log_window=self.window.state_dict(),
        )

    # ---- start and end -----------------------------------------------------------------------------------

    def _open_log(self) -> None:
        """Start the clock, open metrics.jsonl (and wandb) on the main process and say what is about to happen."""
        job = self.job
        self.start_time = time.perf_counter()
        if not job.proc.is_main:
            return
        self.log = RunLog.open(
            job.run_dir,
            resume_step=self.step if job.resumed_from is not None else None,
            wandb=self.cfg.train.wandb,
            tensorboard=self.cfg.train.tensorboard,
            name=self.cfg.train.wandb.name or job.run_dir.root.name,
            config=to_dict(self.cfg),
            run_id=job.progress.wandb_run_id,
            max_steps=self.cfg.train.max_steps,
        )
        self.log.say(self._describe())

    def _describe(self) -> str:
        """The opening message: config, run directory, model size, device, precision, threads, the MFU peak and the
        token budget."""
        job, t, m = self.job, self.cfg.train, self.cfg.model
        params = sum(p.numel() for p in job.model.parameters())
        start = f"resuming from {job.resumed_from} at step {self.step}" if job.resumed_from else "starting fresh"
        lines = [
            summary(self.cfg),
            f"run directory {job.run_dir.root} ({start})",
            f"model {params / 1e6:.2f}M parameters on {job.device}, {self._precision()}, "
            f"compile {'on' if job.compiled else 'off'}",
            describe_optimizer(job.optimizer, job.lr_scales, self.cfg),
            f"torch CPU threads: {job.threads.describe()}"
            + ("; deterministic algorithms on" if t.deterministic else "")
            + ("; freed memory kept for reuse" if job.reuse_memory else ""),
            f"MFU peak per device: {job.peak.describe() if job.peak else 'unknown'}",
            f"{job.tokens_per_step:,} tokens per step = {t.batch_size} sequences x {t.grad_accum_steps} "
            f"accumulation x {m.context_length} tokens x {job.proc.world_size} process(es); "
            f"{t.max_steps} steps = {t.max_steps * job.tokens_per_step:,} tokens",
        ]
        if parallel.active():
            how = {"ddp": "DDP (replicated weights, all-reduced gradients)", "fsdp": "FSDP2 (sharded per block)"}
            backend = torch.distributed.get_backend()
            lines.append(f"{job.proc.world_size} processes ({backend}): {how[t.parallel]}")
        return "\n".join(lines + job.notes)

    def _precision(self) -> str:
        """E.g. ``bf16 autocast``, ``fp32``, ``fp16 autocast + dynamic loss scaling (scale 65536, ×2 every 2000 good
        steps, ×0.5 on overflow)``."""
        job = self.job
        if job.dtype == torch.float32:
            return "fp32"
        name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[job.dtype]
        if not job.scaler.enabled:
            return f"{name} autocast"
        sc = job.scaler
        return (
            f"{name} autocast + dynamic loss scaling (scale {sc.scale_value:g}, x{sc.growth_factor:g} every "
            f"{sc.growth_interval} good steps, x{sc.backoff_factor:g} on overflow; {sc.skipped_steps} skipped so far)"
        )

    def _farewell(self, stopped_by: str | None) -> None:
        """The closing message: where things are and how to go on."""
        where = f"{self.job.run_dir.root}"
        if stopped_by:
            self.log.say(
                f"received {stopped_by}: stopped after step {self.step} and saved a checkpoint; "
                f"resume with the same command (train.resume=auto) to continue in {where}"
            )
        else:
            val = f", validation loss {self.last_val_loss:.4f}" if self.last_val_loss is not None else ""
            self.log.say(f"finished {self.step} steps in {self.wall_time():.1f}s{val}; run directory {where}")
