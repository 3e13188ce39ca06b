"""Training-step throughput of TransformerLM (both attention backends) beside HuggingFace's LlamaForCausalLM.

One step = forward, cross-entropy loss, backward (gradients reset between steps), on the same weights
(the Llama copy is made with ``cs336_lm.interop.hf_llama.to_llama``). Ours uses our cross entropy, Llama
uses ``torch.nn.functional.cross_entropy`` on its logits. The three models take turns inside every
repeat (in a rotating order), so load from other processes hits all of them alike; the table shows
median tokens/s and the ratio to Llama, itself the median over repeats of the per-repeat ratio (the
models of one repeat ran under the same load), for fp32 and for bf16 autocast.

    python scripts/bench_model.py                  # tinystories-17m, batch 8, ctx 256, on CPU
    python scripts/bench_model.py --quick --json out.json
    python scripts/bench_model.py --device cuda
"""

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from cs336_lm.interop.hf_llama import to_llama
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.nn import functional as F

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS), help="model shape")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the preset's context)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model and dtype")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per model and dtype")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated subset of fp32,bf16 (bf16 = autocast)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own default)")
    p.add_argument("--quick", action="store_true", help="batch 2, 2 repeats: a smoke run")
    p.add_argument("--components", action="store_true", help="also time attention core, RMSNorm and SiLU alone")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    unknown = set(args.dtypes.split(",")) - set(DTYPES)
    if unknown:
        p.error(f"--dtypes: unknown {', '.join(sorted(unknown))} (choose from {', '.join(DTYPES)})")
    if args.quick:
        args.batch_size, args.repeats = 2, 2
    return args


def train_step(model, tokens, targets, autocast_dtype, hf: bool) -> None:
    device_type = tokens.device.type
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        if hf:
            logits = model(tokens).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        else:
            loss = F.cross_entropy(model(tokens), targets)
    loss.backward()
    for p in model.parameters():
        p.grad = None


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def build_models(cfg: dict, device) -> dict:
    torch.manual_seed(0)
    ref = TransformerLM(**cfg, attention="reference", device=device)
    sdpa = TransformerLM(**cfg, attention="sdpa", device=device)
    sdpa.load_state_dict(ref.state_dict(), strict=True)
    llama = to_llama(ref, attn_implementation="sdpa").train()
    return {"ours (reference)": ref, "ours (sdpa)": sdpa, "HF Llama (sdpa)": llama}


def run(args) -> dict:
    device = torch.device(args.device)
    cfg = PRESETS[args.preset]
    seq = args.seq_len or cfg["context_length"]
    models = build_models(cfg, device)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg["vocab_size"], (args.batch_size, seq), generator=g).to(device)
    targets = torch.randint(0, cfg["vocab_size"], (args.batch_size, seq), generator=g).to(device)
    names = list(models)
    results = {}
    for dtype_name in args.dtypes.split(","):
        autocast_dtype = DTYPES[dtype_name]
        times = {name: [] for name in names}
        bar = tqdm(total=(args.warmup + args.repeats) * len(names), desc=dtype_name, file=sys.stderr)
        for r in range(args.warmup + args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
            for name in order:
                step = functools.partial(
                    train_step, models[name], tokens, targets, autocast_dtype, name.startswith("HF")
                )
                t = timed(step, device)
                if r >= args.warmup:
                    times[name].append(t)
                bar.update()
        bar.close()
        ntok = args.batch_size * seq
        hf_times = times["HF Llama (sdpa)"]
        results[dtype_name] = {
            name: {
                "tokens_per_s": ntok / statistics.median(ts),
                "best_tokens_per_s": ntok / min(ts),
                "ratio_to_hf": statistics.median(h / t for h, t in zip(hf_times, ts, strict=True)),
                "times_s": ts,
            }
            for name, ts in times.items()
        }
    return {
        "preset": args.preset,
        "batch_size": args.batch_size,
        "seq_len": seq,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "results": results,
    }


def component_times(args, device) -> dict:
    """Forward+backward ms of the pieces where the two stacks differ, at the benchmark's shape (interleaved)."""
    cfg = PRESETS[args.preset]
    b, t, d, h = args.batch_size, args.seq_len or cfg["context_length"], cfg["d_model"], cfg["num_heads"]
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).to(device).requires_grad_()

    q, k, v = (leaf(b, t, h, d // h).transpose(1, 2) for _ in range(3))  # (batch, heads, seq, d_head) views
    x, w, hidden = leaf(b, t, d), leaf(d), leaf(b, t, cfg["d_ff"])
    scale = (d // h) ** -0.5
    sdpa = torch.nn.functional

    def composed_rms_norm():  # HF Llama's RMSNorm
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    cases = {
        "attention core, ours (reference)": lambda: F.causal_softmax(q @ k.transpose(-2, -1), scale) @ v,
        "attention core, torch sdpa": lambda: sdpa.scaled_dot_product_attention(q, k, v, is_causal=True),
        "rms_norm, ours": lambda: F.rms_norm(x, w, 1e-5),
        "rms_norm, HF composition": composed_rms_norm,
        "silu, ours": lambda: F.silu(hidden),
        "silu, torch": lambda: sdpa.silu(hidden),
    }
    times = {name: [] for name in cases}
    repeats = 5 * args.repeats  # cheap, and single ops are the noisiest to time
    for _ in tqdm(range(repeats + args.warmup), desc="components", file=sys.stderr):
        for name, fn in cases.items():
            times[name].append(timed(lambda fn=fn: fn().sum().backward(), device))
    return {name: 1e3 * statistics.median(ts[args.warmup :]) for name, ts in times.items()}


def print_table(report: dict) -> None:
    dtypes = list(report["results"])
    print(
        f"{report['preset']}, batch {report['batch_size']} x seq {report['seq_len']}, {report['device']}, "
        f"{report['torch_threads']} torch threads: forward+backward tokens/s (median), ratio to HF Llama"
    )
    print(f"{'model':<20}" + "".join(f"{d + ' tok/s':>14}{d + ' ratio':>12}" for d in dtypes))
    for name in report["results"][dtypes[0]]:
        row = "".join(
            f"{report['results'][d][name]['tokens_per_s']:>14,.0f}{report['results'][d][name]['ratio_to_hf']:>12.2f}"
            for d in dtypes
        )
        print(f"{name:<20}{row}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = run(args)
    print_table(report)
    if args.components:
        report["components_ms"] = component_times(args, torch.device(args.device))
        print("forward+backward of single pieces, median ms:")
        for name, ms in report["components_ms"].items():
            print(f"  {name:<36}{ms:>10.1f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
