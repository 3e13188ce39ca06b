"""The training loop: config → model, optimizer and data → steps, evaluation, logging, checkpoints, resume.

``train(cfg)`` builds a ``Trainer`` and runs it. One optimizer step is ``grad_accum_steps`` micro-batches
(forward under bf16 autocast where chosen, loss, backward), then clipping, the cosine learning rate and an
AdamW update. Every ``log_every`` steps a metrics record goes to stdout and ``metrics.jsonl``; every
``eval_every`` steps the validation loss is measured on fixed windows; every ``ckpt_every`` steps (and at the
end, or on SIGINT/SIGTERM) a checkpoint is written. A checkpoint carries the model, optimizer, step, config,
the Python/NumPy/torch RNG states and the batch sampler's state, so a resumed run continues bitwise as if it had
never stopped (on CPU). Under torchrun (``train.parallel: ddp | fsdp``, ``cs336_lm.training.parallel``) every rank
draws its own batches (``batch_generator(seed, rank)``), the loss and the stop request are all-reduced each step so
all ranks log the same value and stop at the same step, evaluation is sharded over the ranks and reduced, and the
main process alone prints and writes files; checkpoints hold the whole unwrapped state and every rank's sampler.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from cs336_lm.config import Config, summary, to_dict
from cs336_lm.data import get_batch, iter_eval_batches
from cs336_lm.errors import ConfigError, LMError
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.training import checkpoint as ckpt
from cs336_lm.training import parallel
from cs336_lm.training.build import (
    Snapshot,
    batch_generator,
    build_model,
    build_optimizer,
    lr_at,
    seed_everything,
    training_flops_per_token,
)
from cs336_lm.training.inputs import check_inputs
from cs336_lm.training.metrics import MetricsLog, StepWindow, WandbLogger, format_line, memory_gb, mfu, perplexity
from cs336_lm.training.rundir import RunDir
from cs336_lm.training.runtime import (
    GracefulStop,
    autocast,
    process_info,
    select_device,
    select_dtype,
    should_compile,
)


class NonFiniteLossError(LMError):
    """The training loss became NaN or infinite; the run stops without saving that state."""


@dataclass
class TrainResult:
    """How a run ended: the last completed step, why it stopped and the last losses measured."""

    out_dir: Path
    step: int
    stopped_by: str | None  # the signal name when SIGINT/SIGTERM ended the run early, else None
    train_loss: float | None
    val_loss: float | None


def train(cfg: Config) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring. Leaves the process group on exit."""
    with parallel.process_group_session():
        return Trainer(cfg).run()


class Trainer:
    """Holds one run's state (model, optimizer, sampler, step, logs) and advances it step by step."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.proc = process_info(cfg.train.parallel)
        self.device = select_device(cfg.train.device, self.proc)
        parallel.init_process_group(self.proc, self.device)
        self.dtype = select_dtype(cfg.train.dtype, self.device)
        self.step, self.prior_time, self.wandb_id, self.notes = 0, 0.0, None, []
        # every input and the checkpoint are checked (on every rank, which all go on or all stop) before any write
        state = parallel.on_every_rank(self._prepare, self.proc)
        self.model = self._wrap_model(self.raw_model)
        self.optimizer = build_optimizer(self.raw_model, cfg)  # after wrapping: FSDP replaces the parameters
        if state is not None:
            saved, name = state.get("optimizer"), str(self.resumed_from)
            parallel.on_every_rank(partial(parallel.load_optimizer_state, self.optimizer, saved, name), self.proc)
        if self.proc.is_main:
            self.run_dir.write_run_files(cfg, self.inputs.tokenizer)
        self.stop: GracefulStop | None = None  # the SIGINT/SIGTERM handler while ``run`` loops
        self.stop_votes = 0.0  # ranks that asked to stop by the last step's all-reduce
        self.tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum_steps * cfg.model.context_length
        self.tokens_per_step *= self.proc.world_size
        self.flops_per_token = training_flops_per_token(cfg)
        self.last_saved_step = self.step if self.resumed_from is not None else -1
        self.last_val_loss: float | None = None
        self.compile_s: float | None = None  # first-step time with torch.compile, logged once

    # ---- setup -------------------------------------------------------------------------------------------

    def _prepare(self) -> dict | None:
        """Check the inputs, open the run directory, build the model and load the checkpoint's weights, RNG and
        sampler states (the optimizer state follows once the model is wrapped). Returns the checkpoint, if any."""
        cfg = self.cfg
        self.inputs = check_inputs(cfg)
        self.run_dir = RunDir(Path(cfg.train.out_dir), create=self.proc.is_main)
        self.resumed_from = self.run_dir.resume_source(cfg.train.resume)
        seed_everything(cfg.train.seed)
        self.raw_model = build_model(cfg, self.device)
        self.sampler = batch_generator(cfg.train.seed, self.proc.rank)
        if self.resumed_from is None:
            return None
        path = self.resumed_from
        state = ckpt.read_checkpoint(path)
        self.run_dir.check_compatible(cfg, state.get("config"), path)
        self.step = ckpt.apply_checkpoint(state, self.raw_model, None, name=str(path))
        if self.step > cfg.train.max_steps:
            max_steps = cfg.train.max_steps
            raise ConfigError(f"{path} is at step {self.step}, past train.max_steps={max_steps}; raise max_steps")
        self._restore_samplers(state["rng"])
        self.prior_time = float(state.get("wall_time_s", 0.0))
        self.wandb_id = state.get("wandb_run_id")
        return state

    def _restore_samplers(self, rng: dict) -> None:
        """Global RNGs from the checkpoint; this rank's sampler when the world size matches, else re-derived.

        A checkpoint stores every rank's sampler state (``rng["data_by_rank"]``, one process: ``rng["data"]``).
        On another world size those streams do not map onto the ranks, so each rank starts a fresh stream from
        ``(seed, rank, step)``: the run goes on correctly but draws other batches than an uninterrupted one.
        """
        ckpt.restore_rng_state(rng)
        saved = rng.get("data_by_rank") or ({0: rng["data"]} if "data" in rng else {})
        if len(saved) == self.proc.world_size and self.proc.rank in saved:
            self.sampler.bit_generator.state = saved[self.proc.rank]
            return
        self.sampler = batch_generator(self.cfg.train.seed, self.proc.rank, self.step)
        self.notes.append(
            f"the checkpoint holds batch samplers for {len(saved)} process(es), this run has {self.proc.world_size}: "
            f"each rank samples afresh from (seed, rank, step={self.step})"
        )

    def _wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the loop calls: DDP or FSDP2 (``parallel.wrap``), then ``torch.compile``d when chosen.

        ``self.raw_model`` stays the unwrapped module (FSDP shards it in place): clipping sees its parameters
        and checkpoints save its (gathered) state dict. ``self.wrapped`` is the module before compilation.
        """
        self.wrapped = parallel.wrap(model, self.cfg.train.parallel, self.device)
        self.sharded = parallel.active() and self.cfg.train.parallel == "fsdp"
        self.compiled = should_compile(self.cfg.train.compile, self.device)
        return torch.compile(self.wrapped) if self.compiled else self.wrapped

    def _save(self) -> Path | None:
        """Checkpoint the current step into ``checkpoints/`` (main process only), keeping the last K.

        Every rank takes part: FSDP's state is gathered shard by shard, and each rank's sampler state is collected.
        """
        self.last_saved_step = self.step
        model_state = parallel.full_model_state(self.raw_model, self.sharded)
        optimizer_state = parallel.full_optimizer_state(self.optimizer, self.sharded)
        samplers = parallel.all_gather(self.sampler.bit_generator.state)
        if not self.proc.is_main:
            return None
        rng = ckpt.capture_rng_state(self.sampler)
        if parallel.active():
            rng["data_by_rank"] = dict(enumerate(samplers))
        return self.run_dir.save(
            Snapshot(model_state),
            Snapshot(optimizer_state),
            self.step,
            self.cfg.train.keep_last,
            config=to_dict(self.cfg),
            rng=rng,
            wall_time_s=self.wall_time(),
            wandb_run_id=self.wandb.run_id,
        )

    def wall_time(self) -> float:
        """Seconds of training so far, summed over every resumed segment of the run."""
        return self.prior_time + (time.perf_counter() - self.start_time)

    # ---- one step ----------------------------------------------------------------------------------------

    def train_step(self) -> tuple[float, torch.Tensor]:
        """One optimizer step over ``grad_accum_steps`` micro-batches; returns (mean loss, pre-clip grad norm)."""
        t = self.cfg.train
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum_steps):
            x, y = self.next_batch()  # (batch, seq) each
            with parallel.gradient_sync(self.wrapped, enabled=micro == t.grad_accum_steps - 1):
                with autocast(self.device, self.dtype):
                    loss = cross_entropy(self.model(x), y)
                (loss / t.grad_accum_steps).backward()
            loss_sum += loss.detach()
        # one all-reduce: the loss summed over ranks and the number of ranks asked to stop (SIGINT/SIGTERM)
        asked = float(self.stop is not None and self.stop.requested is not None)
        totals = parallel.all_reduce_sum(torch.stack([loss_sum, torch.tensor(asked, device=self.device)]))
        loss_value = totals[0].item() / (t.grad_accum_steps * self.proc.world_size)
        self.stop_votes = totals[1].item()
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at step {self.step + 1}; stopped without saving that state "
                f"(last good checkpoint: {self.run_dir.latest() or 'none'}). Lower optim.lr or raise "
                "optim.warmup_iters, then resume with train.resume=auto"
            )
        grad_norm = parallel.clip_grad_norm(list(self.raw_model.parameters()), self.cfg.optim.grad_clip or math.inf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_value, grad_norm

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A random training batch ``(x, y)``, each (batch_size, context_length), drawn from this rank's sampler."""
        t = self.cfg.train
        tokens = self.inputs.train_tokens
        return get_batch(tokens, t.batch_size, self.cfg.model.context_length, self.device, generator=self.sampler)

    def first_step(self) -> tuple[float, torch.Tensor]:
        """The first step, timed apart (it includes ``torch.compile``); a failing compile falls back to eager."""
        if not self.compiled:
            return self.train_step()
        sampler_state = self.sampler.bit_generator.state
        started = time.perf_counter()
        try:
            result = self.train_step()
        except (LMError, KeyboardInterrupt):
            raise
        except Exception as e:  # any compiler failure: fall back to the eager module
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); training the eager model", stacklevel=2)
            self.optimizer.zero_grad(set_to_none=True)
            self.sampler.bit_generator.state = sampler_state
            self.model, self.compiled = self.wrapped, False
            return self.train_step()
        self.compile_s = time.perf_counter() - started
        self.say(f"compiled the model and ran the first step in {self.compile_s:.1f}s")
        return result

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean cross-entropy over ``eval_batches`` fixed validation batches (the same windows every time).

        With several ranks, rank r evaluates batches r, r + W, … and the sums are all-reduced. Every rank runs
        the same number of forwards (FSDP gathers weights collectively): a rank out of batches repeats the last
        one with weight 0.
        """
        t, total, count = self.cfg.train, 0.0, 0
        rank, world = self.proc.rank, self.proc.world_size
        self.model.eval()
        context = self.cfg.model.context_length
        batches = list(iter_eval_batches(self.inputs.val_tokens, t.batch_size, context, t.eval_batches, "cpu"))
        for index in range(rank, -(-len(batches) // world) * world, world):
            x, y = (b.to(self.device) for b in batches[min(index, len(batches) - 1)])  # (batch, seq) each
            with autocast(self.device, self.dtype):
                loss = cross_entropy(self.model(x), y).item()
            if index < len(batches):
                total, count = total + loss * len(x), count + len(x)
        self.model.train()
        if parallel.active():
            sums = parallel.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64, device=self.device))
            total, count = sums.tolist()
        return total / count

    # ---- the loop ----------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train from ``self.step`` to ``train.max_steps`` (or until SIGINT/SIGTERM), then save and report."""
        t = self.cfg.train
        self._open_logs()
        loss, stopped_by = None, None
        bar = tqdm(
            total=t.max_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=None if self.proc.is_main else True,
        )
        try:
            with GracefulStop() as self.stop, bar:
                first, compiling = True, self.compiled  # the first compiled step is timed apart
                while self.step < t.max_steps:
                    started = time.perf_counter()
                    loss, grad_norm = self.first_step() if first else self.train_step()
                    self._window.add(loss, time.perf_counter() - started, timed=not (first and compiling))
                    first = False
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    self._after_step(grad_norm)
                    stopped_by = self._stop_agreed()
                    if stopped_by:
                        break
                if self.step != self.last_saved_step:
                    path = self._save()
                    self.say(f"saved checkpoint {path}" if path else "")
        finally:
            self.stop = None
            self._close_logs()
        self._farewell(stopped_by)
        return TrainResult(self.run_dir.root, self.step, stopped_by, loss, self.last_val_loss)

    def _stop_agreed(self) -> str | None:
        """The reason to stop after this step, decided alike on every rank, or None to go on.

        One process stops as soon as its own signal arrived. Several stop when any rank had been asked to by the
        time of the step's all-reduce (``self.stop_votes``); a signal arriving later counts at the next step.
        """
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
        steps, loss_sum, timed_steps, seconds = self._window.take()
        tokens_per_s = timed_steps * self.tokens_per_step / seconds if seconds > 0 else None
        record = {
            "step": self.step,
            "tokens": self.step * self.tokens_per_step,
            "lr": lr_at(self.step - 1, self.cfg),
            "loss": loss_sum / max(steps, 1),
            "grad_norm": float(grad_norm),
            "tokens_per_s": tokens_per_s,
            "mfu": mfu(self.flops_per_token, tokens_per_s, self.device, self.dtype),
            "memory_gb": memory_gb(self.device),
            "wall_time_s": self.wall_time(),
            "compile_s": self.compile_s,
        }
        self.compile_s = None
        self._emit({k: v for k, v in record.items() if v is not None})

    def _log_eval(self) -> None:
        """Emit an evaluation record: validation loss and perplexity on the fixed windows (all ranks evaluate)."""
        self.last_val_loss = self.evaluate()
        record = {"step": self.step, "tokens": self.step * self.tokens_per_step, "val_loss": self.last_val_loss}
        self._emit({**record, "val_ppl": perplexity(self.last_val_loss), "wall_time_s": self.wall_time()})

    def _emit(self, record: dict) -> None:
        """Send a record to metrics.jsonl, wandb and stdout (main process only)."""
        if not self.proc.is_main:
            return
        self.metrics.write(record)
        self.wandb.log(record)
        self.say(format_line(record, self.cfg.train.max_steps))

    def say(self, message: str) -> None:
        """Print a line for people from the main process, without breaking the progress bar."""
        if self.proc.is_main and message:
            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()

    # ---- start and end -----------------------------------------------------------------------------------

    def _open_logs(self) -> None:
        """Start the clock, open metrics.jsonl (and wandb) and print what is about to happen."""
        self.start_time = time.perf_counter()
        self._window = StepWindow()
        if not self.proc.is_main:
            return
        resume_step = self.step if self.resumed_from is not None else None
        self.metrics = MetricsLog(self.run_dir.metrics, resume_step=resume_step)
        w = self.cfg.train.wandb
        name = w.name or self.run_dir.root.name
        self.wandb = WandbLogger(
            w.enabled, project=w.project, entity=w.entity, name=name, config=to_dict(self.cfg), run_id=self.wandb_id
        )
        self.say(self._describe())

    def _describe(self) -> str:
        """The opening message: config, run directory, model size, device and token budget."""
        t, m = self.cfg.train, self.cfg.model
        params = sum(p.numel() for p in self.raw_model.parameters())
        start = f"resuming from {self.resumed_from} at step {self.step}" if self.resumed_from else "starting fresh"
        precision = "bf16 autocast" if self.dtype == torch.bfloat16 else "fp32"
        return "\n".join(
            [
                summary(self.cfg),
                f"run directory {self.run_dir.root} ({start})",
                f"model {params / 1e6:.2f}M parameters on {self.device}, {precision}, "
                f"compile {'on' if self.compiled else 'off'}",
                f"{self.tokens_per_step:,} tokens per step = {t.batch_size} sequences x {t.grad_accum_steps} "
                f"accumulation x {m.context_length} tokens x {self.proc.world_size} process(es); "
                f"{t.max_steps} steps = {t.max_steps * self.tokens_per_step:,} tokens",
                *self._describe_parallel(),
            ]
        )

    def _describe_parallel(self) -> list[str]:
        """Lines on the process group (when there is one) and notes from setup, e.g. re-derived samplers."""
        lines = list(self.notes)
        if parallel.active():
            how = {"ddp": "DDP (replicated weights, all-reduced gradients)", "fsdp": "FSDP2 (sharded per block)"}
            backend = torch.distributed.get_backend()
            lines.insert(0, f"{self.proc.world_size} processes ({backend}): {how[self.cfg.train.parallel]}")
        return lines

    def _close_logs(self) -> None:
        if self.proc.is_main and hasattr(self, "metrics"):
            self.metrics.close()
            self.wandb.finish()

    def _farewell(self, stopped_by: str | None) -> None:
        """The closing message: where things are and how to go on."""
        where = f"{self.run_dir.root}"
        if stopped_by:
            self.say(
                f"received {stopped_by}: stopped after step {self.step} and saved a checkpoint; "
                f"resume with the same command (train.resume=auto) to continue in {where}"
            )
        else:
            val = f", validation loss {self.last_val_loss:.4f}" if self.last_val_loss is not None else ""
            self.say(f"finished {self.step} steps in {self.wall_time():.1f}s{val}; run directory {where}")
