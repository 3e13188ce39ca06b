"""Training throughput on one GPU: bf16 autocast + ``torch.compile``, Triton kernels against the torch ops.

For each preset (default: ``tinystories-17m`` at batch 128 × 256 and ``gpt2-small-like`` at batch 16 × 1024 with a
32,000-token vocabulary, ~110M parameters) and each kernel backend (``triton``, ``torch``), the script builds the
model, our AdamW and the compiled module, times the first step (compilation included) and then runs whole training
steps (forward, cross-entropy, backward, clipping, AdamW) for ``--seconds``, reporting tokens/s, MFU against the
datasheet peak (``cs336_lm.training.peak``), peak GPU memory and the compile time. It needs a CUDA GPU.

    python scripts/bench_gpu_train.py --json gpu_train.json
    python scripts/bench_gpu_train.py --presets tinystories-17m --seconds 10 --no-compile
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from cs336_lm.nn import PRESETS, ModelArgs, TransformerLM
from cs336_lm.nn.accounting import training_flops_per_token
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay
from cs336_lm.training.peak import mfu, peak_for

SETUPS = {  # preset -> (batch size, overrides of the preset)
    "tinystories-17m": (128, {}),
    "gpt2-small-like": (16, {"vocab_size": 32000}),
    "debug": (4, {}),  # a smoke run of the script itself (on a CPU too, with --device cpu)
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tinystories-17m", "gpt2-small-like"], choices=sorted(SETUPS))
    p.add_argument("--device", default="cuda", help="cuda; cpu runs a smoke test of the script (timings mean nothing)")
    p.add_argument("--kernels", nargs="+", default=["triton", "torch"], choices=["triton", "torch"])
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "reference"])
    p.add_argument("--seconds", type=float, default=30.0, help="timed training per set-up, after the first step")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def run(preset: str, kernels: str, args) -> dict:
    batch, overrides = SETUPS[preset]
    shape = {**PRESETS[preset], **overrides}
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = TransformerLM(**shape, attention=args.attention, kernels=kernels, device=device)
    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-4)
    forward = model if args.no_compile else torch.compile(model)
    tokens = torch.randint(0, shape["vocab_size"], (batch, shape["context_length"] + 1), device=device)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = cross_entropy(forward(x), y)
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - start
    for _ in range(3):  # settle: allocator, autotuning
        step()
    sync()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds or steps == 0:
        step()
        steps += 1
        if steps % 10 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - start
    tokens_per_s = steps * batch * shape["context_length"] / elapsed
    flops = training_flops_per_token(ModelArgs.from_dict(shape))
    peak = peak_for(device, torch.bfloat16)
    return {
        "preset": preset,
        "kernels": kernels,
        "batch": batch,
        "context": shape["context_length"],
        "params": sum(p.numel() for p in model.parameters()),
        "first_step_s": first_s,
        "steps": steps,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(flops, tokens_per_s, peak),
        "peak": peak.source,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
        "compile": not args.no_compile,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: bench_gpu_train.py needs a CUDA GPU (or --device cpu for a smoke run)", file=sys.stderr)
        return 2
    results = []
    for preset in args.presets:
        for kernels in args.kernels:
            r = run(preset, kernels, args)
            results.append(r)
            memory = f"{r['peak_memory_gb']:6.2f} GB" if r["peak_memory_gb"] is not None else "-"
            print(
                f"{preset:<16} kernels={kernels:<6} {r['tokens_per_s'] / 1e3:9.1f}k tok/s  "
                f"MFU {100 * (r['mfu'] or 0):5.1f}%  mem {memory}  first step {r['first_step_s']:6.1f} s  "
                f"({r['peak']})",
                flush=True,
            )
            torch._dynamo.reset()
            if args.device == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
            json.dump({"device": name, "torch": torch.__version__, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
