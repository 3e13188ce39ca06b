"""Benchmark ``train.threads: auto`` against fixed thread counts on a small CPU training step, idle and busy.

The step is the demo's (``configs/demo.yaml``: 1.38M parameters, context 256, batch 8, sdpa attention, fp32):
forward, our cross_entropy, backward, clipping and our AdamW. Two scenarios:

  idle  the machine as it is (on a shared machine that is not idle: the load average is recorded)
  busy  a CPU-burning process pinned to core 0 (started by this script, stopped at the end), after
        ``--settle`` seconds for the 1-minute load average to notice it (it rises by ~0.5 in 45 s)

In each, ``auto`` is resolved by ``cs336_lm.training.threads.choose_threads`` from the load at that moment (with
``OMP_NUM_THREADS`` ignored), and the settings ``auto`` and ``--fixed`` (default 1 and 2) are interleaved within
every repeat, so machine noise hits them alike. The table shows median tokens/s and auto's ratio to each fixed
count; ``--json PATH`` writes the numbers. ``--quick`` is a smoke test (few steps, short settle).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from cs336_lm.nn import TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay
from cs336_lm.training.threads import choose_threads, load_average, usable_cpus

DEMO_SHAPE = {"vocab_size": 2048, "context_length": 256, "d_model": 128, "num_layers": 4, "num_heads": 4, "d_ff": 384}
BURNER = "import os\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {0})\nwhile True: pass\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per setting and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the settings")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context-length", type=int, default=256, help="the demo's is 256")
    parser.add_argument("--fixed", default="1,2", help="fixed thread counts to compare auto with")
    parser.add_argument("--scenarios", default="idle,busy", help="idle, busy or both")
    parser.add_argument("--settle", type=float, default=45.0, help="seconds the burner runs before busy timing")
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 repeat, 10 s settle")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.settle = 2, 1, 10.0
    return args


class Step:
    """One demo-shaped model with its optimizer and a fixed batch; ``run()`` is one full training step."""

    def __init__(self, batch_size: int, context_length: int = DEMO_SHAPE["context_length"]):
        torch.manual_seed(0)
        self.model = TransformerLM(**{**DEMO_SHAPE, "context_length": context_length}, attention="sdpa")
        self.optimizer = AdamW(param_groups_for_weight_decay(self.model, 0.1), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        shape = (batch_size, context_length)
        self.x = torch.randint(0, DEMO_SHAPE["vocab_size"], shape, generator=generator)
        self.y = torch.randint(0, DEMO_SHAPE["vocab_size"], shape, generator=generator)
        self.tokens = self.x.numel()

    def run(self) -> None:
        cross_entropy(self.model(self.x), self.y).backward()
        clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def tokens_per_s(step: Step, threads: int, steps: int) -> float:
    """Throughput of ``steps`` training steps on ``threads`` intra-op threads (after one untimed warm-up step)."""
    torch.set_num_threads(threads)
    step.run()
    started = time.perf_counter()
    for _ in range(steps):
        step.run()
    return steps * step.tokens / (time.perf_counter() - started)


def measure(step: Step, args: argparse.Namespace, ceiling: int) -> dict:
    """Median tokens/s of ``auto`` and each fixed count, interleaved; auto re-resolved from the load each round."""
    fixed = [int(n) for n in args.fixed.split(",") if n]
    rates: dict[str, list[float]] = {"auto": [], **{str(n): [] for n in fixed}}
    chosen = []
    for _ in range(args.repeats):
        choice = choose_threads("auto", environ={}, ceiling=ceiling)
        chosen.append(choice.describe())
        rates["auto"].append(tokens_per_s(step, choice.count, args.steps))
        for n in fixed:
            rates[str(n)].append(tokens_per_s(step, n, args.steps))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {f"auto/{n}": medians["auto"] / medians[str(n)] for n in fixed}
    return {"auto_chose": chosen, "tokens_per_s": rates, "median_tokens_per_s": medians, "ratios": ratios}


def scenario(name: str, step: Step, args: argparse.Namespace, ceiling: int) -> dict:
    """Run ``measure`` on the machine as it is (``idle``) or beside a burner pinned to core 0 (``busy``)."""
    burner = None
    if name == "busy":
        burner = subprocess.Popen([sys.executable, "-c", BURNER])
        print(f"busy: burner pid {burner.pid} on core 0; waiting {args.settle:.0f}s for the load average", flush=True)
        time.sleep(args.settle)
    try:
        load = load_average()
        result = measure(step, args, ceiling)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return {"load_average_at_start": load, **result}


def report(results: dict) -> None:
    for name, result in results.items():
        print(f"\n{name} (load average {result['load_average_at_start']:.2f}; auto chose {result['auto_chose'][0]})")
        for setting, rate in result["median_tokens_per_s"].items():
            print(f"  {setting:>5} thread(s): {rate:9,.0f} tokens/s")
        print("  " + "   ".join(f"{k} = {v:.2f}x" for k, v in result["ratios"].items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    ceiling = torch.get_num_threads()  # torch's default for this process (physical cores, or OMP_NUM_THREADS)
    print(f"{usable_cpus()} usable CPUs, torch default {ceiling} threads, load average {load_average():.2f}")
    step = Step(args.batch_size, args.context_length)
    results = {name: scenario(name, step, args, ceiling) for name in args.scenarios.split(",") if name}
    report(results)
    if args.json:
        record = {
            "benchmark": "threads",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "scenarios": results,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
