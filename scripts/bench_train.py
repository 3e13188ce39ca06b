"""Benchmark a full training step (forward, cross-entropy, backward, clipping, AdamW) in tokens per second.

Three set-ups at one model shape (default: the ``tinystories-17m`` preset, batch 8, context 256), each with its
own copy of the same initial weights, in an fp32 column and a bf16-autocast column:

  ours        TransformerLM + our cross_entropy + our clip_grad_norm_ + our AdamW
  ours+torch  TransformerLM + our cross_entropy + our clip_grad_norm_ + torch.optim.AdamW
  hf          transformers' LlamaForCausalLM (same shape, sdpa attention) + torch cross_entropy, clipping, AdamW

Set-ups are interleaved within every repeat (so machine noise hits them alike); the table shows median step
times, tokens/s and the ratios ours/ours+torch (the optimizer's share) and ours/hf (the whole stack). On CPU it
also reports tokens per second of process CPU time, which stays meaningful on a shared machine where the wall
clock mostly measures how long we waited for a core (use ``--threads 1`` there). A second
table times the optimizer step alone: our AdamW (foreach and per-tensor) against torch's. On a CPU the process
keeps freed memory for reuse, as ``lm-train`` does (``train.reuse_cpu_memory``), for every set-up alike;
``--system-malloc`` times them with glibc's defaults instead. Run
``python scripts/bench_train.py --help`` for the options; ``--quick`` runs a small shape for a smoke test.
"""

import argparse
import copy
import datetime
import json
import platform
import statistics
import sys
import time
from contextlib import nullcontext

import torch

from cs336_lm.interop.hf_llama import to_llama
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay
from cs336_lm.run.malloc import reuse_freed_memory

SETUPS = ("ours", "ours+torch", "hf")
DTYPES = ("fp32", "bf16")
LR, WEIGHT_DECAY, MAX_NORM = 1e-3, 0.1, 1.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def build_setups(args, device: torch.device) -> dict:
    """``{name: (step_fn, model, optimizer)}`` — every model starts from the same weights."""
    shape = {**PRESETS[args.preset], "context_length": args.context_length}
    torch.manual_seed(0)
    base = TransformerLM(**shape, attention=args.attention, device=device)
    setups = {}
    for name in SETUPS:
        model = to_llama(base, attn_implementation="sdpa") if name == "hf" else copy.deepcopy(base)
        model.train()
        groups = param_groups_for_weight_decay(model, WEIGHT_DECAY)
        opt = AdamW(groups, lr=LR) if name == "ours" else torch.optim.AdamW(groups, lr=LR)
        setups[name] = (model, opt)
    return setups


def train_step(name: str, model, opt, x, y, device: torch.device, dtype: str) -> None:
    """One optimizer step on batch ``(x, y)``; the HF set-up uses torch's loss and clipping throughout."""
    opt.zero_grad(set_to_none=True)
    with _autocast(device, dtype):
        if name == "hf":
            logits = model(input_ids=x).logits  # (batch, seq, vocab_size)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        else:
            loss = cross_entropy(model(x), y)
    loss.backward()
    if name == "hf":
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    else:
        clip_grad_norm_(model.parameters(), MAX_NORM)
    opt.step()


def time_training(args, device: torch.device) -> dict:
    setups = build_setups(args, device)
    vocab = PRESETS[args.preset]["vocab_size"]
    gen = torch.Generator().manual_seed(1)
    batch = torch.randint(0, vocab, (args.batch_size, args.context_length + 1), generator=gen).to(device)
    x, y = batch[:, :-1], batch[:, 1:]
    times = {(n, d): [] for n in SETUPS for d in args.dtypes}
    cpu_times = {(n, d): [] for n in SETUPS for d in args.dtypes}
    for name, (model, opt) in setups.items():  # warm-up: allocator, autocast caches, optimizer state
        for dtype in args.dtypes:
            train_step(name, model, opt, x, y, device, dtype)
    for _ in range(args.repeats):
        for dtype in args.dtypes:
            for name, (model, opt) in setups.items():
                _sync(device)
                start, cpu_start = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    train_step(name, model, opt, x, y, device, dtype)
                _sync(device)
                times[(name, dtype)].append((time.perf_counter() - start) / args.steps)
                cpu_times[(name, dtype)].append((time.process_time() - cpu_start) / args.steps)
    tokens = args.batch_size * args.context_length
    out = {}
    for (name, dtype), ts in times.items():
        median, cpu_median = statistics.median(ts), statistics.median(cpu_times[(name, dtype)])
        out.setdefault(name, {})[dtype] = {
            "step_s": median,
            "tokens_per_s": tokens / median,
            "repeats_s": ts,
            "cpu_step_s": cpu_median,
            "tokens_per_cpu_s": tokens / cpu_median,
        }
    return out


def time_optimizers(args, device: torch.device) -> dict:
    """Median seconds of ``opt.step()`` alone (fixed random gradients) for each AdamW variant, interleaved.

    Process CPU time on CPU (robust to waiting for a core on a shared machine), wall time on a GPU."""
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    shape = {**PRESETS[args.preset], "context_length": args.context_length}
    torch.manual_seed(0)
    base = TransformerLM(**shape, attention=args.attention, device=device)
    variants = {
        "ours (foreach)": lambda g: AdamW(g, lr=LR),
        "ours (per-tensor)": lambda g: AdamW(g, lr=LR, foreach=False),
        "torch (default)": lambda g: torch.optim.AdamW(g, lr=LR),
        "torch (foreach)": lambda g: torch.optim.AdamW(g, lr=LR, foreach=True),
    }
    if device.type == "cuda":
        variants["torch (fused)"] = lambda g: torch.optim.AdamW(g, lr=LR, fused=True)
    opts = {}
    for name, make in variants.items():
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opts[name] = make(param_groups_for_weight_decay(model, WEIGHT_DECAY))
        opts[name].step()  # creates the state
    times = {name: [] for name in opts}
    for _ in range(max(10, args.repeats * 4)):
        for name, opt in opts.items():
            _sync(device)
            start = clock()
            opt.step()
            _sync(device)
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def print_report(args, device, training: dict, optim: dict) -> None:
    params = sum(p.numel() for p in TransformerLM(**PRESETS[args.preset], device="meta").parameters())
    print(
        f"preset {args.preset} ({params / 1e6:.1f}M params), batch {args.batch_size} x context {args.context_length}, "
        f"attention={args.attention}, device {device}, {torch.get_num_threads()} threads, "
        f"{args.repeats} repeats x {args.steps} steps"
        + (", freed memory kept for reuse (all set-ups)" if getattr(args, "reuse_memory", False) else "")
    )
    on_cpu = device.type == "cpu"
    cells = [(" step ms", "step_s", 1e3, 15), (" tok/s", "tokens_per_s", 1, 13)]
    if on_cpu:
        cells.append((" tok/cpu-s", "tokens_per_cpu_s", 1, 15))
    print(f"{'set-up':<12}" + "".join(f"{d + label:>{w}}" for d in args.dtypes for label, _, _, w in cells))
    for name in SETUPS:
        r = training[name]
        print(f"{name:<12}" + "".join(f"{r[d][k] * f:>{w}.1f}" for d in args.dtypes for _, k, f, w in cells))
    for other in ("ours+torch", "hf"):
        for key in ("tokens_per_s", "tokens_per_cpu_s") if on_cpu else ("tokens_per_s",):
            ratios = ", ".join(f"{d} {training['ours'][d][key] / training[other][d][key]:.2f}x" for d in args.dtypes)
            print(f"{key} ratio ours / {other}: {ratios}")
    print(f"optimizer step alone (median {'CPU' if device.type == 'cpu' else 'wall'} ms):")
    ref = optim["torch (default)"]
    for name, seconds in optim.items():
        print(f"  {name:<18} {seconds * 1e3:8.1f} ms   ({ref / seconds:.2f}x the speed of torch default)")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x{len(names)}"
    except (OSError, IndexError):
        return platform.machine()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS), help="model shape")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context-length", type=int, default=256)
    parser.add_argument("--attention", default="reference", choices=["reference", "sdpa"], help="our model's")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES, help="columns to time")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed round")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); 1 on a busy machine")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's allocator as it is (default: keep freed memory for reuse, as lm-train does on a CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="debug preset, batch 4 x 64, 2 repeats of 1 step")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.batch_size, args.context_length, args.repeats, args.steps = "debug", 4, 64, 2, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.reuse_memory = device.type == "cpu" and not args.system_malloc and reuse_freed_memory()
    training = time_training(args, device)
    optim = time_optimizers(args, device)
    print_report(args, device, training, optim)
    if args.json:
        result = {
            "benchmark": "train_step",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "machine": f"{_cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}",
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "training": training,
            "optimizer_step_s": optim,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
