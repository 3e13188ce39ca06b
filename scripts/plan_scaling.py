"""A paper plan of training step time on 8 GPUs for the experiment configs: compute, communication, overlap.

For each config and for two ways of using 8 GPUs — "same per-GPU batch" (the config as written on every GPU, a
global batch 8× larger) and "same global batch" (the config's tokens per step split over 8 GPUs) — it prints the
training FLOPs per step (``cs336_lm.nn.accounting``), the compute time per GPU at an assumed MFU, the bytes each
GPU moves per optimizer step under DDP (ring all-reduce of the fp32 gradients, 2(N−1)/N × bytes) and FSDP2
(all-gather of the fp32 parameters in every micro-step's forward and backward, reduce-scatter of the gradients
once: (2·accum + 1)(N−1)/N × bytes), the communication time at an assumed NCCL bus bandwidth plus a per-collective
latency, and the step time with no overlap and with full overlap. All assumptions are flags; ``--json`` writes
the table. Example: ``python scripts/plan_scaling.py --gpus 8``.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from cs336_lm.config import load_config, to_dict
from cs336_lm.nn import ModelArgs, accounting

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("configs/tinystories.yaml", "configs/owt.yaml")
DDP_BUCKET_BYTES = 25 * 2**20  # DistributedDataParallel's default bucket_cap_mb=25


def plan(config: str, gpus: int, mode: str, peak: float, mfu: float, busbw: float, latency: float) -> dict:
    """One row: the step of ``config`` on ``gpus`` GPUs (``mode`` = ``per-gpu`` or ``global``), all in seconds."""
    cfg = load_config(REPO / config, ["data.train_path=x", "data.val_path=x", "data.tokenizer_dir=x"])
    t, m = cfg.train, cfg.model
    shape = ModelArgs.from_dict(to_dict(cfg)["model"])
    params = accounting.param_counts(shape)["total"]
    sequences = t.batch_size * t.grad_accum_steps  # per GPU per optimizer step, as the config is written
    accum = t.grad_accum_steps
    if mode == "global":  # the config's global batch split over the GPUs, in as few micro-steps as fit
        sequences = max(1, sequences // gpus)
        accum = max(1, math.ceil(sequences / t.batch_size))
    tokens_per_gpu = sequences * m.context_length
    flops_per_gpu = tokens_per_gpu * accounting.training_flops_per_token(shape)
    compute = flops_per_gpu / (peak * mfu)
    grad_bytes = 4 * params  # fp32 master weights and gradients (bf16 autocast leaves them fp32)
    share = (gpus - 1) / gpus
    ddp_bytes = 2 * share * grad_bytes
    fsdp_bytes = (2 * accum + 1) * share * grad_bytes
    ddp_collectives = math.ceil(grad_bytes / DDP_BUCKET_BYTES)
    fsdp_collectives = (m.num_layers + 1) * (2 * accum + 1)  # one unit per block plus the root
    ddp_comm = ddp_bytes / busbw + ddp_collectives * latency
    fsdp_comm = fsdp_bytes / busbw + fsdp_collectives * latency
    backward = compute * 2 / 3  # DDP overlaps its bucketed all-reduce with the backward pass only
    return {
        "config": config,
        "mode": mode,
        "gpus": gpus,
        "params": params,
        "global_tokens_per_step": tokens_per_gpu * gpus,
        "tokens_per_gpu": tokens_per_gpu,
        "grad_accum": accum,
        "train_tflop_per_gpu": flops_per_gpu / 1e12,
        "compute_ms": 1e3 * compute,
        "ddp_bytes_gb": ddp_bytes / 1e9,
        "ddp_comm_ms": 1e3 * ddp_comm,
        "ddp_step_no_overlap_ms": 1e3 * (compute + ddp_comm),
        "ddp_step_overlap_ms": 1e3 * (compute + max(0.0, ddp_comm - backward)),
        "fsdp_bytes_gb": fsdp_bytes / 1e9,
        "fsdp_comm_ms": 1e3 * fsdp_comm,
        "fsdp_step_no_overlap_ms": 1e3 * (compute + fsdp_comm),
        "fsdp_step_overlap_ms": 1e3 * max(compute, fsdp_comm),
        "ddp_comm_fraction": ddp_comm / (compute + ddp_comm),
    }


def render(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    header = (
        "| config | 8-GPU use | tokens/step (global) | accum | TFLOP/GPU | compute ms | DDP GB | DDP comm ms "
        "| DDP step ms (no overlap / overlap) | FSDP GB | FSDP comm ms | FSDP step ms (no overlap / overlap) |"
    )
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        use = "same per-GPU batch" if r["mode"] == "per-gpu" else "same global batch"
        lines.append(
            f"| {Path(r['config']).stem} | {use} | {r['global_tokens_per_step']:,} | {r['grad_accum']} "
            f"| {r['train_tflop_per_gpu']:.2f} | {r['compute_ms']:.1f} | {r['ddp_bytes_gb']:.3f} "
            f"| {r['ddp_comm_ms']:.2f} | {r['ddp_step_no_overlap_ms']:.1f} / {r['ddp_step_overlap_ms']:.1f} "
            f"| {r['fsdp_bytes_gb']:.3f} | {r['fsdp_comm_ms']:.2f} "
            f"| {r['fsdp_step_no_overlap_ms']:.1f} / {r['fsdp_step_overlap_ms']:.1f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--gpus", type=int, default=8, help="GPUs (one node, NVLink)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100 SXM datasheet)")
    p.add_argument("--mfu", type=float, default=0.40, help="assumed model FLOPs utilisation")
    p.add_argument("--busbw-gbs", type=float, default=400.0, help="assumed NCCL bus bandwidth, GB/s")
    p.add_argument("--latency-us", type=float, default=20.0, help="assumed fixed cost per NCCL collective, µs")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows = [
        plan(c, args.gpus, mode, args.peak_tflops * 1e12, args.mfu, args.busbw_gbs * 1e9, args.latency_us * 1e-6)
        for c in CONFIGS
        for mode in ("per-gpu", "global")
    ]
    print(
        f"assumptions: {args.gpus} GPUs, peak {args.peak_tflops:.0f} TFLOP/s bf16, MFU {args.mfu:.0%}, NCCL bus "
        f"bandwidth {args.busbw_gbs:.0f} GB/s, {args.latency_us:.0f} µs per collective"
    )
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
