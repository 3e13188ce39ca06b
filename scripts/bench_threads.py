"""Benchmark ``auto`` CPU threads against fixed counts, idle and busy: a training step (``train.threads``) and
``lm-generate --threads``.

  train     the demo's training step (``configs/demo.yaml``: 1.38M parameters, context 256, batch 8, sdpa
            attention, fp32: forward, our cross_entropy, backward, clipping and our AdamW) in this process, each
            setting applied with ``torch.set_num_threads``; ``auto`` resolved by ``cs336_lm.run.threads.
            choose_threads`` at that moment (``OMP_NUM_THREADS`` ignored)
  generate  ``lm-generate --threads S`` as users run it, one process per setting and repeat, on a run written to a
            temporary directory (the demo's model shape with random weights, a byte-level tokenizer grown to its
            2,048 tokens: no download): greedy, ``--gen-tokens`` new tokens after a short prompt. Tokens/s is what
            the command reports on stderr (the decoding, not its start-up); what ``auto`` chose is read from its
            ``torch CPU threads`` line. ``OMP_NUM_THREADS`` is removed from its environment

Two scenarios:

  idle  the machine as it is (on a shared machine that is not idle: the load average is recorded)
  busy  a CPU-burning process pinned to core 0 (started by this script, stopped at the end), after ``--settle``
        seconds (``auto`` counts the cores busy during a quarter second at its start, so a few are enough; the
        1-minute load average, recorded beside, rises by ~0.5 in 45 s)

In each, ``auto`` and the ``--fixed`` counts (default 1 and 2; 2 = every core, torch's own default here, what
``lm-generate`` did before it had ``--threads``) are interleaved within every repeat, so machine noise hits them
alike. The table shows median tokens/s and auto's ratio to each fixed count; ``--json PATH`` writes the numbers.
``--quick`` is a smoke test (few steps and tokens, one repeat, a short settle).

    python scripts/bench_threads.py                                  # train and generate, idle and busy
    python scripts/bench_threads.py --parts generate --scenarios busy --json bench-results/threads.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from cs336_lm.nn import TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay
from cs336_lm.run import RunDir
from cs336_lm.run.threads import choose_threads, load_average, usable_cpus
from cs336_lm.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parent.parent
DEMO_SHAPE = {"vocab_size": 2048, "context_length": 256, "d_model": 128, "num_layers": 4, "num_heads": 4, "d_ff": 384}
BURNER = "import os\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {0})\nwhile True: pass\n"
PROMPT = "Once upon a time there was a little cat who"
THREADS_LINE = re.compile(r"^torch CPU threads: (\d+) \((.*)\)$", re.M)
PART_NAMES = {"train": "training step", "generate": "lm-generate"}
RATE_LINE = re.compile(r"^(\d+) tokens in [\d.]+ s: ([\d.]+) tokens/s$", re.M)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="train,generate", help="train, generate or both")
    parser.add_argument("--scenarios", default="idle,busy", help="idle, busy or both")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per setting and repeat")
    parser.add_argument("--gen-tokens", type=int, default=64, help="tokens lm-generate decodes per setting and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the settings")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context-length", type=int, default=256, help="the demo's is 256")
    parser.add_argument("--fixed", default="1,2", help="fixed thread counts to compare auto with")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds the burner runs before busy timing")
    parser.add_argument("--quick", action="store_true", help="2 steps, 16 tokens, 1 repeat, 1 s settle")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.gen_tokens, args.repeats, args.settle = 2, 16, 1, 1.0
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


def demo_run(root: Path) -> Path:
    """A run directory for ``lm-generate``: the demo's model shape (random weights: decoding costs the same), and
    bytes 0..255 plus two-byte tokens (each the merge of its bytes) up to its vocabulary."""
    torch.manual_seed(0)
    shape = {**DEMO_SHAPE, "rope_theta": 10000.0}
    pairs = [(a, b) for a in range(32, 127) for b in range(256)][: shape["vocab_size"] - 256]
    vocab = {i: bytes([i]) for i in range(256)} | {256 + i: bytes(p) for i, p in enumerate(pairs)}
    run = RunDir(root).create()
    Tokenizer(vocab, [(bytes([a]), bytes([b])) for a, b in pairs]).save(run.tokenizer_dir)
    run.save_checkpoint(TransformerLM(**shape), None, 0, None, config={"model": {**shape, "preset": None}})
    return root


def lm_generate(run: Path, threads: str, tokens: int) -> tuple[float, int]:
    """Tokens/s of one ``lm-generate RUN --threads THREADS`` as it reports them, and the thread count it took."""
    cmd = [sys.executable, "-m", "cs336_lm.cli.generate", str(run), "--prompt", PROMPT, "--temperature", "0",
           "--max-new-tokens", str(tokens), "--device", "cpu", "--threads", threads]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    chose, rate = THREADS_LINE.search(done.stderr), RATE_LINE.search(done.stderr)
    if done.returncode != 0 or chose is None or rate is None:
        raise RuntimeError(f"lm-generate --threads {threads} failed ({done.returncode}): {done.stderr.strip()}")
    return float(rate[2]), int(chose[1])


def interleaved(time_one: Callable[[str], tuple[float, int]], fixed: list[int], repeats: int) -> dict:
    """Median tokens/s of ``auto`` and each fixed count, interleaved in every round; what auto chose each round."""
    rates: dict[str, list[float]] = {"auto": [], **{str(n): [] for n in fixed}}
    chosen = []
    for _ in range(repeats):
        for setting in rates:
            rate, count = time_one(setting)
            rates[setting].append(rate)
            if setting == "auto":
                chosen.append(count)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratios = {f"auto/{n}": medians["auto"] / medians[str(n)] for n in fixed}
    return {"auto_chose": chosen, "tokens_per_s": rates, "median_tokens_per_s": medians, "ratios": ratios}


def measure_train(step: Step, args: argparse.Namespace, fixed: list[int], ceiling: int) -> dict:
    """The training step on ``auto`` (re-resolved from the machine each round) and each fixed count."""
    reasons = []

    def time_one(setting: str) -> tuple[float, int]:
        if setting != "auto":
            return tokens_per_s(step, int(setting), args.steps), int(setting)
        choice = choose_threads("auto", environ={}, ceiling=ceiling)
        reasons.append(choice.describe())
        return tokens_per_s(step, choice.count, args.steps), choice.count

    return {**interleaved(time_one, fixed, args.repeats), "auto_reasons": reasons}


def measure_generate(run: Path, args: argparse.Namespace, fixed: list[int]) -> dict:
    """``lm-generate`` with ``--threads auto`` and ``--threads N`` for each fixed count, a new process each time."""
    return interleaved(lambda setting: lm_generate(run, setting, args.gen_tokens), fixed, args.repeats)


@contextlib.contextmanager
def machine(name: str, settle: float) -> Iterator[None]:
    """The machine as it is (``idle``), or beside a burner pinned to core 0 (``busy``), stopped on the way out."""
    if name != "busy":
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    print(f"busy: burner pid {burner.pid} on core 0; waiting {settle:.0f}s", flush=True)
    try:
        time.sleep(settle)
        yield
    finally:
        burner.kill()
        burner.wait()


def scenario(name: str, parts: list[str], args: argparse.Namespace, run: Path | None) -> dict:
    fixed = [int(n) for n in args.fixed.split(",") if n]
    ceiling = torch.get_num_threads()  # torch's default for this process (physical cores, or OMP_NUM_THREADS)
    with machine(name, args.settle):
        result: dict = {"load_average_at_start": load_average()}
        if "train" in parts:
            result["train"] = measure_train(Step(args.batch_size, args.context_length), args, fixed, ceiling)
            torch.set_num_threads(ceiling)
        if "generate" in parts and run is not None:
            result["generate"] = measure_generate(run, args, fixed)
    return result


def report(results: dict) -> None:
    """One Markdown row per scenario and part: what auto chose each round, the medians and auto's ratios."""
    first = next(iter(results.values()))
    part = next(p for p in PART_NAMES if p in first)
    fixed = [k for k in first[part]["median_tokens_per_s"] if k != "auto"]
    print("\n| scenario | part | auto chose | auto | " + " | ".join(f"{n} thread(s)" for n in fixed) + " | "
          + " | ".join(f"auto/{n}" for n in fixed) + " |")  # fmt: skip
    print("|---|---|---|" + "---:|" * (1 + 2 * len(fixed)))
    for name, result in results.items():
        where = f"{name} (load {result['load_average_at_start']:.2f})"
        for part in PART_NAMES:
            if part not in result:
                continue
            r = result[part]
            rates = " | ".join(f"{r['median_tokens_per_s'][k]:,.1f}" for k in ["auto", *fixed])
            ratios = " | ".join(f"{r['ratios'][f'auto/{n}']:.2f}" for n in fixed)
            chose = ", ".join(str(n) for n in r["auto_chose"])
            print(f"| {where} | {PART_NAMES[part]} | {chose} | {rates} | {ratios} |")
    for name, result in results.items():
        if "train" in result and result["train"]["auto_reasons"]:
            print(f"{name}: auto chose {result['train']['auto_reasons'][0]} (first round)")


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    print(f"{usable_cpus()} usable CPUs, torch default {torch.get_num_threads()} threads, "
          f"load average {load_average():.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_threads_") as tmp:
        run = demo_run(Path(tmp) / "run") if "generate" in parts else None
        results = {name: scenario(name, parts, args, run) for name in args.scenarios.split(",") if name}
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
