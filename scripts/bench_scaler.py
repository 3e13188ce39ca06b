"""Benchmark what fp16 loss scaling costs a training step: the scaler's gradient pass, and whole steps with and
without it.

1. ``LossScaler.unscale_`` (divide every gradient by S, check the sum of norms for inf/nan) over a model's
   gradients, beside ``clip_grad_norm_`` (a norm and a multiply over the same gradients) as a yardstick.
2. Whole fp16-autocast training steps (forward, cross_entropy, backward, unscale, clip, AdamW) with the scaler
   enabled and with it disabled (the identity), interleaved, so the difference is the scaler's whole cost.

Default shape: the demo's (``configs/demo.yaml``, 1.38M parameters, context 256, batch 8); ``--preset NAME`` takes a
``cs336_lm.nn.PRESETS`` shape instead. ``--threads N`` fixes torch's threads (use 1 on a shared machine);
``--json PATH`` writes the numbers; ``--quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch

from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.optim import AdamW, clip_grad_norm_, param_groups_for_weight_decay
from cs336_lm.training.scaler import LossScaler

DEMO_SHAPE = {"vocab_size": 2048, "context_length": 256, "d_model": 128, "num_layers": 4, "num_heads": 4, "d_ff": 384}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="a cs336_lm.nn.PRESETS name (default: the demo's shape)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="1 step, 1 repeat")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 1, 1
    return args


def build(args: argparse.Namespace):
    shape = {**PRESETS[args.preset]} if args.preset else dict(DEMO_SHAPE)
    shape = {k: v for k, v in shape.items() if k in DEMO_SHAPE or k == "rope_theta"}
    torch.manual_seed(0)
    model = TransformerLM(**shape, attention="sdpa")
    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    size = (args.batch_size, shape["context_length"])
    x = torch.randint(0, shape["vocab_size"], size, generator=generator)
    y = torch.randint(0, shape["vocab_size"], size, generator=generator)
    return model, optimizer, x, y


def best_of(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def gradient_pass(model, x, y, repeats: int) -> dict:
    """Seconds of ``unscale_`` and of ``clip_grad_norm_`` over the model's gradients (S = 1 keeps them unchanged)."""
    cross_entropy(model(x), y).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    scaler = LossScaler(enabled=True, init_scale=1.0)
    unscale = best_of(lambda: scaler.unscale_(grads), repeats * 5)
    clip = best_of(lambda: clip_grad_norm_(model.parameters(), float("inf")), repeats * 5)
    model.zero_grad(set_to_none=True)
    return {"unscale_s": unscale, "clip_grad_norm_s": clip, "gradient_values": sum(g.numel() for g in grads)}


def fp16_step(model, optimizer, x, y, scaler: LossScaler) -> None:
    with torch.autocast("cpu", dtype=torch.float16):
        loss = cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    overflow = scaler.unscale_(grads).item() > 0
    if scaler.update(overflow):
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def whole_steps(model, optimizer, x, y, args: argparse.Namespace) -> dict:
    """Median seconds per fp16 step with the scaler enabled and disabled, interleaved within every repeat."""
    scalers = {"enabled": LossScaler(enabled=True), "disabled": LossScaler(enabled=False)}
    times: dict[str, list[float]] = {name: [] for name in scalers}
    for scaler in scalers.values():
        fp16_step(model, optimizer, x, y, scaler)  # warm-up
    for _ in range(args.repeats):
        for name, scaler in scalers.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                fp16_step(model, optimizer, x, y, scaler)
            times[name].append((time.perf_counter() - started) / args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    skipped = scalers["enabled"].skipped_steps
    return {"step_s": times, "median_step_s": medians, "overhead": medians["enabled"] / medians["disabled"] - 1,
            "skipped_steps": skipped}  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, optimizer, x, y = build(args)
    params = sum(p.numel() for p in model.parameters())
    grads = gradient_pass(model, x, y, args.repeats)
    steps = whole_steps(model, optimizer, x, y, args)
    print(f"{params / 1e6:.2f}M parameters, batch {tuple(x.shape)}, {torch.get_num_threads()} thread(s)")
    print(f"unscale_ (divide + inf check): {1e3 * grads['unscale_s']:.2f} ms; "
          f"clip_grad_norm_ for scale: {1e3 * grads['clip_grad_norm_s']:.2f} ms")  # fmt: skip
    med = steps["median_step_s"]
    print(f"fp16 step, scaler on: {1e3 * med['enabled']:.1f} ms; off: {1e3 * med['disabled']:.1f} ms; "
          f"overhead {100 * steps['overhead']:+.1f}%")  # fmt: skip
    if args.json:
        record = {
            "benchmark": "scaler",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
            "machine": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "parameters": params,
            "gradient_pass": grads,
            "whole_steps": steps,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
