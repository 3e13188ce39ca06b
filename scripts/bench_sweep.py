"""What ``lm-sweep`` costs over training the same runs by hand, and what ``--workers 2`` buys on this machine.

Each repeat times, interleaved (the order flips every repeat, so a load that drifts hits both alike):

- ``lm-train x N``: the sweep's N trials as N ``lm-train`` processes one after another (the reference: what a person
  or a shell loop does without a sweep);
- ``lm-sweep``: the same N runs as one ``lm-sweep --workers 1`` into a fresh directory (Optuna study in SQLite,
  one subprocess per trial, the summary and its files);
- ``lm-sweep --workers 2``: the same sweep with two trials at a time (each trial then gets one of the two cores:
  ``OMP_NUM_THREADS`` = cores / workers).

The trials are a grid over ``optim.lr`` (``--lrs``) on ``--config`` (``configs/debug.yaml``; ``configs/demo.yaml``
times trials of a realistic length) with the byte-level inputs the tests use (written into a temporary directory),
``--steps`` steps each, every run with ``train.threads: auto`` (one thread per idle core; ``--workers 2`` gives
each trial cores / 2). Medians over ``--repeats`` are printed with the ratios (target: ``lm-sweep`` ≤ 1.05 × the
reference) and the machine's load average before and after; ``--json PATH`` writes them.

    python scripts/bench_sweep.py [--config configs/debug.yaml] [--steps 300] [--lrs 1e-3,3e-3,1e-2,3e-2] [--repeats 3]
                                  [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "debug.yaml"  # the default of --config
TEXT = (
    "Once upon a time there was a little cat who liked to play in the garden. The dog ran to the park and found a "
    "big red ball under a tree. Lily and her brother made a cake for their mother, and she smiled. "
)


def write_inputs(root: Path) -> list[str]:
    """Byte-level tokenizer and token files (as tests/training/conftest.py writes them); the overrides that use them."""
    sys.path.insert(0, str(REPO))
    from cs336_lm.data import write_tokens
    from cs336_lm.tokenizer import Tokenizer

    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(root / "tokenizer")
    write_tokens(root / "train.npy", tok.encode(TEXT * 400), tok.vocab_size)
    write_tokens(root / "val.npy", tok.encode(TEXT * 40), tok.vocab_size)
    return [
        f"data.train_path={root / 'train.npy'}",
        f"data.val_path={root / 'val.npy'}",
        f"data.tokenizer_dir={root / 'tokenizer'}",
        "model.vocab_size=257",
        "train.device=cpu",
    ]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    e.pop("OMP_NUM_THREADS", None)  # train.threads: auto decides, on both sides alike
    return e


def timed(cmd: list[str], environ: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ, cwd=REPO)
    return time.perf_counter() - start


def by_hand(config: Path, work: Path, fixed: list[str], lrs: list[str]) -> float:
    total = 0.0
    for lr in lrs:
        out = work / f"lr={lr}"
        cmd = [sys.executable, "-m", "cs336_lm.cli.train", "--config", str(config), *fixed, f"optim.lr={lr}"]
        total += timed([*cmd, f"train.out_dir={out}"], env())
    return total


def sweep(config: Path, work: Path, fixed: list[str], lrs: list[str], workers: int) -> float:
    cmd = [sys.executable, "-m", "cs336_lm.cli.sweep", "--config", str(config), *fixed, f"optim.lr={','.join(lrs)}"]
    return timed([*cmd, "--out", str(work), "--workers", str(workers)], env())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=CONFIG, help="the base config of every trial")
    p.add_argument("--steps", type=int, default=300, help="training steps per trial")
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2", help="the grid: optim.lr values, one trial each")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    lrs = args.lrs.split(",")
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        fixed = write_inputs(root / "inputs")
        fixed += [f"train.max_steps={args.steps}", "train.eval_every=100", "train.ckpt_every=100", "train.log_every=50"]
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {"lm-train x N": [], "lm-sweep": [], "lm-sweep --workers 2": []}
        for repeat in range(args.repeats):
            order = list(times) if repeat % 2 == 0 else list(reversed(times))
            for name in order:
                work = root / f"r{repeat}-{name.replace(' ', '_')}"
                if name == "lm-train x N":
                    seconds = by_hand(args.config, work, fixed, lrs)
                else:
                    seconds = sweep(args.config, work, fixed, lrs, workers=2 if "2" in name else 1)
                times[name].append(seconds)
                print(f"repeat {repeat + 1}: {name:<22} {seconds:7.1f} s", flush=True)
                shutil.rmtree(work, ignore_errors=True)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["lm-train x N"]
    print(f"\n{len(lrs)} trials of {args.steps} steps on {args.config.name}, {cores} cores, medians of {args.repeats}:")
    for name, value in med.items():
        print(f"  {name:<22} {value:7.1f} s   {value / ref:5.3f}x lm-train x N")
    print(f"  --workers 2 vs 1: {med['lm-sweep --workers 2'] / med['lm-sweep']:.3f}x the wall time")
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "cores": cores,
            "trials": len(lrs),
            "config": str(args.config),
            "steps": args.steps,
            "repeats": args.repeats,
            "seconds": times,
            "median_s": med,
            "sweep_over_reference": med["lm-sweep"] / ref,
            "workers2_over_workers1": med["lm-sweep --workers 2"] / med["lm-sweep"],
            "load_average_before": load_before,
            "load_average_after": load_after,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
