"""Does ``torchrun --nproc_per_node 1`` (``train.parallel=ddp``) cost throughput against a plain ``lm-train`` run?

Both run the same short training (``--preset``, default ``tinystories-17m`` with a byte-level vocabulary of 257,
on random tokens written to a temporary directory) as subprocesses, interleaved ``--repeats`` times so machine
noise hits them alike. Each run's tokens/s is the median of its ``metrics.jsonl`` records after the first (which
holds the warm-up, and on CUDA the compile step); the table shows the medians over repeats and the ratio
torchrun/plain. Under torchrun with one process the trainer joins a one-rank process group (Gloo on CPU, NCCL on
CUDA), wraps the model in DDP and all-reduces the loss and stop flag every step: the ratio measures that cost.
``OMP_NUM_THREADS`` is set to ``--threads`` in both (torchrun would otherwise force 1). ``--quick`` is a smoke
test with the ``debug`` preset; ``--json PATH`` writes the results.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cs336_lm.data import write_tokens
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
VOCAB = 257  # 256 bytes + <|endoftext|>


def make_inputs(root: Path, num_tokens: int) -> list[str]:
    """A byte-level tokenizer and random train/val token files; the data overrides that point at them."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(root / "tokenizer")
    rng = np.random.default_rng(0)
    write_tokens(root / "train.npy", rng.integers(0, VOCAB, num_tokens), VOCAB)
    write_tokens(root / "val.npy", rng.integers(0, VOCAB, num_tokens // 10), VOCAB)
    return [
        f"data.train_path={root / 'train.npy'}",
        f"data.val_path={root / 'val.npy'}",
        f"data.tokenizer_dir={root / 'tokenizer'}",
    ]


def run_once(kind: str, args, data: list[str], out_dir: Path) -> float:
    """Train once (``plain`` or ``torchrun``) and return the median tokens/s of its records after the first."""
    overrides = [
        *data,
        f"train.out_dir={out_dir}",
        f"model.preset={args.preset}",
        f"model.vocab_size={VOCAB}",
        f"train.batch_size={args.batch_size}",
        f"train.max_steps={args.steps}",
        f"train.log_every={args.log_every}",
        "train.eval_every=0",
        "train.eval_batches=1",
        "train.ckpt_every=0",
        f"train.device={args.device}",
        "train.resume=none",
    ]
    if args.context_length:
        overrides.append(f"model.context_length={args.context_length}")
    train = ["--config", str(REPO / "configs" / "debug.yaml"), *overrides]
    if kind == "plain":
        cmd = [sys.executable, "-m", "cs336_lm.cli.train", *train]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
        cmd = [*launcher, "-m", "cs336_lm.cli.train", *train, "train.parallel=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rates = [r["tokens_per_s"] for r in read_metrics(out_dir / "metrics.jsonl") if "tokens_per_s" in r][1:]
    if not rates:
        raise SystemExit(f"{kind} run logged no throughput after its first record; raise --steps")
    return statistics.median(rates)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="tinystories-17m", help="model preset (vocab_size is set to 257)")
    p.add_argument("--context-length", type=int, default=None, help="override the preset's context length")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    p.add_argument("--log-every", type=int, default=5, help="steps per metrics record")
    p.add_argument("--repeats", type=int, default=3, help="interleaved plain/torchrun pairs")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for both runs")
    p.add_argument("--quick", action="store_true", help="debug preset, few steps, 2 repeats")
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.preset, args.steps, args.log_every, args.repeats = "debug", 30, 5, 2
    results: dict[str, list[float]] = {"plain": [], "torchrun": []}
    with tempfile.TemporaryDirectory(prefix="bench_torchrun_") as tmp:
        root = Path(tmp)
        data = make_inputs(root, 200_000)
        for repeat in range(args.repeats):
            order = ("plain", "torchrun") if repeat % 2 == 0 else ("torchrun", "plain")
            for kind in order:
                results[kind].append(run_once(kind, args, data, root / f"{kind}{repeat}"))
                print(f"repeat {repeat + 1}/{args.repeats} {kind:8s} {results[kind][-1]:,.0f} tokens/s", flush=True)
    plain, torchrun = (statistics.median(results[k]) for k in ("plain", "torchrun"))
    print(f"\n| run | median tokens/s |\n|---|---|\n| plain lm-train | {plain:,.0f} |")
    print(f"| torchrun --nproc_per_node 1, parallel=ddp | {torchrun:,.0f} |")
    print(
        f"\nratio torchrun/plain = {torchrun / plain:.3f}  ({args.preset}, batch {args.batch_size}, {args.steps} steps)"
    )
    if args.json:
        summary = {
            "date": datetime.date.today().isoformat(),
            "machine": platform.platform(),
            "args": {k: str(v) for k, v in vars(args).items()},
            "tokens_per_s": results,
            "median": {"plain": plain, "torchrun": torchrun},
            "ratio": torchrun / plain,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
