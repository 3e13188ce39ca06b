"""Running a sweep: workers claim trials from the study, train each in a subprocess, record how it ended.

``run_sweep(plan, out_dir, …)`` is the whole of ``lm-sweep`` after parsing: it writes ``out_dir/sweep.json``, opens
the study, starts ``workers`` threads (default: one per visible GPU when there are several, else one), each of which
claims the next trial not finished (``SweepStudy.claim``), runs ``python -m cs336_lm.sweep.trial`` with the trial's
overrides, ``train.out_dir=DIR/<name>`` and ``train.resume=auto``, and records its status and metrics. The trial's
output goes to ``DIR/logs/<name>.log``. With several workers each trial gets ``OMP_NUM_THREADS`` = cores / workers
(its ``train.threads: auto`` reads it; one worker leaves ``auto`` to count the idle cores as ``lm-train`` does); with
GPUs each worker's trials see only that worker's GPU (``CUDA_VISIBLE_DEVICES``).

SIGINT or SIGTERM stop the sweep cleanly: no new trial starts, the running ones get SIGINT (they save a checkpoint
and exit as ``lm-train`` does) and are recorded as interrupted; the same command later resumes them. With
``prune="median"`` the validation losses in a running trial's ``metrics.jsonl`` are reported to Optuna's median
pruner as they appear, and a trial it prunes is stopped the same way and recorded as pruned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cs336_lm.errors import ConfigError
from cs336_lm.fileio import atomic_write, make_directories, remove_empty
from cs336_lm.sweep.plan import SweepPlan, Trial, difference
from cs336_lm.sweep.study import FINISHED, HEARTBEAT_S, Attempt, SweepStudy, database_errors, default_storage
from cs336_lm.sweep.summary import SummaryRow, run_metrics, sort_rows, write_summary

POLL_S = 0.5


@dataclass
class SweepResult:
    """The summary rows (sorted), where they were written, and whether a signal stopped the sweep early."""

    rows: list[SummaryRow]
    summary_csv: Path
    summary_md: Path
    stopped_by: str | None


def run_sweep(
    plan: SweepPlan,
    out_dir: str | os.PathLike,
    storage: str | None = None,
    workers: int | None = None,
    prune: str = "none",
    study_name: str | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run (or resume) the sweep ``plan`` into ``out_dir``; see the module docstring."""
    out = Path(out_dir)
    with database_errors(storage or default_storage(out)):
        return _run_sweep(plan, out, storage, workers, prune, study_name, progress)


def _run_sweep(
    plan: SweepPlan,
    out: Path,
    storage: str | None,
    workers: int | None,
    prune: str,
    study_name: str | None,
    progress: bool,
) -> SweepResult:
    created = make_directories(out)
    try:
        _check_plan(plan, out)
        study = SweepStudy.open(plan, out, storage, study_name, prune)
    except BaseException:
        remove_empty(created)  # a refused sweep leaves no empty directory behind
        raise
    with atomic_write(out / "sweep.json", "w", encoding="utf-8") as f:
        f.write(plan.to_json())
    devices = _gpus() if workers is None or workers > 1 else []
    count = workers or max(1, len(devices))
    runner = Runner(study, plan, out, count, devices, prune == "median", progress)
    stopped_by = runner.run()
    rows = summary_rows(study, out)
    if not plan.is_search:  # a grid's trials not begun yet (a sweep stopped early, or others still running them)
        seen = {r.name for r in rows}
        rows += [SummaryRow(t.name, t.point, t.values, "pending") for t in plan.grid_trials() if t.name not in seen]
    csv_path, md_path = write_summary(rows, out)
    return SweepResult(sort_rows(rows), csv_path, md_path, stopped_by)


def summary_rows(study: SweepStudy, out: Path) -> list[SummaryRow]:
    """One row per trial in the study; a running trial's metrics read from its directory so far."""
    rows = []
    for name, a in study.latest_by_name().items():
        metrics = a.attrs.get("metrics") or (run_metrics(out / name) if a.live else {})
        values = json.loads(a.attrs.get("values", "{}"))
        rows.append(SummaryRow(name, a.attrs.get("point", name), values, a.status, metrics, a.attrs.get("error", "")))
    return rows


def _check_plan(plan: SweepPlan, out: Path) -> None:
    """Refuse a directory whose ``sweep.json`` (what ``lm-plot`` recognises a sweep by) holds another plan."""
    path = out / "sweep.json"
    if path.is_file():
        diff = difference(json.loads(path.read_text(encoding="utf-8")), plan.describe())
        if diff:
            raise ConfigError(
                f"{out} already holds a sweep with other settings ({diff}); use another --out for this one"
            )


def _gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries (none without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


class Runner:
    """The workers of one ``lm-sweep`` process; ``run`` returns the signal that stopped it, or None."""

    def __init__(
        self, study: SweepStudy, plan: SweepPlan, out: Path, workers: int, gpus: list[str], prune: bool, progress: bool
    ):
        self.study, self.plan, self.out, self.workers, self.gpus, self.prune = study, plan, out, workers, gpus, prune
        self.lock = threading.Lock()
        self.stopped_by: str | None = None
        self.error: BaseException | None = None  # what ended a worker, raised again once all have stopped
        self.procs: dict[int, subprocess.Popen] = {}
        self.pending: list[Trial] = [] if plan.is_search else plan.grid_trials()
        if plan.is_search:
            self.pending = self._unfinished_search_trials()
        done = sum(a.status in FINISHED for a in study.latest_by_name().values())
        self.bar = tqdm(total=plan.total(), initial=done, unit="trial", disable=None if progress else True)

    def _unfinished_search_trials(self) -> list[Trial]:
        """A search's trials that began (here or elsewhere) and are neither finished nor running: they run first."""
        trials = []
        for a in self.study.latest_by_name().values():
            if a.status not in FINISHED and not a.live:
                values = json.loads(a.attrs.get("values", "{}"))
                values.pop("train.seed", None)
                trials.append(self.plan.trial_for(values, int(a.attrs.get("seed_index", 0))))
        return trials

    # ---- the loop ------------------------------------------------------------------------------------------

    def run(self) -> str | None:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(self.workers)]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(timeout=POLL_S)
            if self.error is not None:
                raise self.error
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.bar.close()
        return self.stopped_by

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self.stopped_by is None
        self.stopped_by = signal.Signals(signum).name
        with self.lock:
            procs = list(self.procs.values())
        for proc in procs:  # the first signal asks each trial to save and stop; a second one insists
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if first else signal.SIGTERM)
        if first:
            self.bar.write(f"received {self.stopped_by}: stopping the running trials (they save a checkpoint)")

    def _work(self, index: int) -> None:
        try:
            self._work_loop(index)
        except BaseException as e:  # a database gone mid-sweep: stop every trial, and raise it in the main thread
            self.error = self.error or e
            if self.stopped_by is None:
                self._on_signal(signal.SIGTERM, None)

    def _work_loop(self, index: int) -> None:
        gpu = self.gpus[index % len(self.gpus)] if self.gpus else None
        while self.stopped_by is None:
            with self.lock:
                claimed = self._next()
            if claimed is None:
                return
            if self.stopped_by is not None:  # the signal came while claiming: leave the trial for the next run
                self.study.finish(claimed[0], "interrupted")
                return
            self._run_one(*claimed, gpu=gpu, key=index)

    def _next(self) -> tuple[Attempt, Trial] | None:
        """The next trial this process runs, claimed in the study; None when nothing is left to claim."""
        while self.pending:
            trial = self.pending.pop(0)
            held = self.study.latest_by_name().get(trial.name)
            if held is not None and (held.status in FINISHED or held.live):
                continue
            attempt = self.study.claim(trial)
            if attempt is not None:
                return attempt, trial
        if not self.plan.is_search:
            return None
        drawn = self.study.ask_new()
        if drawn is None:
            return None
        ot, values = drawn
        first = self.plan.trial_for(values, 0)
        self.pending.extend(self.plan.trial_for(values, s) for s in range(1, self.plan.seeds))
        attempt = self.study.adopt_drawn(ot, first)
        return (attempt, first) if attempt is not None else self._next()

    # ---- one trial -----------------------------------------------------------------------------------------

    def _run_one(self, attempt: Attempt, trial: Trial, gpu: str | None, key: int) -> None:
        run_dir, logs = self.out / trial.name, self.out / "logs"
        logs.mkdir(exist_ok=True)
        result_path = logs / f"{trial.name}.result.json"
        result_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "cs336_lm.sweep.trial", str(result_path), "--config", str(self.plan.config)]
        cmd += [*trial.overrides, f"train.out_dir={run_dir}", "train.resume=auto"]
        started, pruned = time.perf_counter(), False
        with open(logs / f"{trial.name}.log", "a", encoding="utf-8") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env(gpu),
                start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which passes it on
            )  # fmt: skip
            with self.lock:
                self.procs[key] = proc
            if self.stopped_by is not None:
                proc.send_signal(signal.SIGINT)
            pruned = self._watch(proc, attempt, run_dir)
            with self.lock:
                self.procs.pop(key, None)
        status, error = _read_result(result_path, proc.returncode, logs / f"{trial.name}.log")
        if pruned and status in ("interrupted", "done"):
            status = "pruned"
        metrics = run_metrics(run_dir)
        self.study.finish(attempt, status, metrics, error)
        if status in FINISHED:
            self.bar.update(1)
        best = metrics.get("best_val_loss")
        shown = f", best val loss {best:.4f}" if best is not None else ""
        why = f": {error}" if error and status in ("failed", "diverged") else ""
        took = time.perf_counter() - started
        self.bar.write(f"{trial.name}: {status}{shown} ({took:.1f}s){why}")

    def _watch(self, proc: subprocess.Popen, attempt: Attempt, run_dir: Path) -> bool:
        """Wait for the trial, beating the heart and feeding the pruner; True when the pruner stopped it."""
        beat, reported, pruned = time.monotonic(), 0, False
        while True:
            try:
                proc.wait(timeout=POLL_S)  # returns the moment the trial ends
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - beat > HEARTBEAT_S:
                self.study.heartbeat(attempt)
                beat = time.monotonic()
            if self.prune and not pruned:
                evals = _val_losses(run_dir)
                for step, loss in evals[reported:]:
                    if self.study.report(attempt, step, loss):
                        pruned = True
                        proc.send_signal(signal.SIGINT)
                        break
                reported = len(evals)
        return pruned

    def _env(self, gpu: str | None) -> dict[str, str]:
        env = dict(os.environ)
        if self.workers > 1:  # K trials at once share the cores; one trial alone keeps lm-train's auto rule
            env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // self.workers)))
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return env


def _val_losses(run_dir: Path) -> list[tuple[int, float]]:
    from cs336_lm.training.metrics import read_metrics

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [(int(r["step"]), float(r["val_loss"])) for r in read_metrics(path) if "val_loss" in r and "step" in r]


def _read_result(path: Path, returncode: int | None, log: Path) -> tuple[str, str]:
    """The trial's (status, error line); without a result file, the log's last line (a process killed hard)."""
    if path.is_file():
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            return str(result["status"]), str(result.get("error", ""))
        except (ValueError, KeyError):
            pass
    last = ""
    if log.is_file():
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
    if returncode is not None and returncode < 0:
        return "interrupted", f"stopped by signal {signal.Signals(-returncode).name}"
    return "failed", last or f"exit status {returncode}"
