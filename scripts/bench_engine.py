"""The engine (continuous batching, paged KV cache) against static batching and HuggingFace ``generate``.

A seeded mixed workload at the tinystories-17m shape (random weights, context 512): 128 requests, prompts of
8–200 tokens, outputs of 16–200 tokens (``scripts/engine_workload.py``), greedy, every request running exactly
its ``max_new_tokens``. Throughput is requested tokens / wall seconds (prefill included), taking turns inside
every repeat so that load from other processes hits every way alike; medians over repeats.

* ``engine``            — ``Engine(model).generate(prompts, per-request params)``: requests join and leave between
  steps, each step packs one token of every running sequence and prompt chunks of waiting ones;
* ``static batch B``    — the static-batch decoder the engine replaced (``scripts/static_batch.py``) over the
  requests in arrival order, B at a time (left-padded
  prompts, every batch runs to its longest request: the shorter rows' extra tokens are wasted work);
* ``HF generate B``     — ``LlamaForCausalLM.generate`` on the same weights in padded static batches of B.

Also measured: the engine's KV memory (blocks held × block size) against the tokens its sequences actually hold
and against a contiguous cache of the same running batch at the longest length; and batch-1 decoding (16-token
prompt, 256 new tokens) of the engine and the static decoder against HF. On CUDA: decode tok/s at batch 64 and 256 with
and without CUDA-graph replay.

    python scripts/bench_engine.py                  # the full workload (several minutes on a 2-core CPU)
    python scripts/bench_engine.py --quick --json out.json
    python scripts/bench_engine.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_workload import Request, mixed_workload
from static_batch import complete_static

from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.interop.hf_llama import to_llama
from cs336_lm.nn import PRESETS, TransformerLM


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS))
    p.add_argument("--requests", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="timed runs of every way")
    p.add_argument("--static-batches", default="8,32", help="batch sizes of the static baselines")
    p.add_argument("--max-batch-tokens", type=int, default=512)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--no-hf", action="store_true", help="leave out HF generate")
    p.add_argument("--parts", default="mixed,kv,batch1", help="which measurements: mixed, kv, batch1 (comma-separated)")
    p.add_argument("--quick", action="store_true", help="24 requests, 1 repeat, batch-1 with 64 tokens: a smoke run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.requests, args.repeats = 24, 1
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


# ---- the ways ---------------------------------------------------------------------------------------------


def run_engine(model, work: list[Request], args, trace: list | None = None) -> list[list[int]]:
    engine = Engine(model, block_size=args.block_size, max_batch_tokens=args.max_batch_tokens)
    for r in work:
        engine.add_request(r.prompt, SamplingParams(max_new_tokens=r.max_new_tokens))
    outputs: dict[int, list[int]] = {i: [] for i in range(len(work))}
    while engine.has_unfinished:
        for event in engine.step():
            if event.token is not None:
                outputs[event.request_id].append(event.token)
        if trace is not None:
            s = engine.stats()
            longest = max((len(q.tokens) for q in engine.scheduler.running), default=0)
            trace.append((s.blocks_used * s.block_size, s.kv_tokens, s.running, longest))
    return [outputs[i] for i in range(len(work))]


def run_static(model, work: list[Request], batch: int) -> list[list[int]]:
    out = []
    for i in range(0, len(work), batch):
        group = work[i : i + batch]
        rows = complete_static(model, [r.prompt for r in group], max(r.max_new_tokens for r in group))
        out += [row.tokens[: r.max_new_tokens] for row, r in zip(rows, group, strict=True)]
    return out


def run_hf(hf, work: list[Request], batch: int, device: torch.device) -> list[list[int]]:
    out = []
    for i in range(0, len(work), batch):
        group = work[i : i + batch]
        width = max(len(r.prompt) for r in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for b, r in enumerate(group):  # left padding, as generate expects for a decoder-only model
            ids[b, width - len(r.prompt) :] = torch.tensor(r.prompt)
            mask[b, width - len(r.prompt) :] = 1
        new = max(r.max_new_tokens for r in group)
        with torch.inference_mode():
            gen = hf.generate(
                ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        out += [gen[b, width : width + r.max_new_tokens].tolist() for b, r in enumerate(group)]
    return out


# ---- the measurements --------------------------------------------------------------------------------------


def mixed(model, hf, args, device) -> dict:
    work = mixed_workload(args.requests, seed=0, vocab_size=model.vocab_size)
    requested = sum(r.max_new_tokens for r in work)
    ways = {"engine": lambda: run_engine(model, work, args)}
    for b in [int(x) for x in args.static_batches.split(",")]:
        ways[f"static batch {b}"] = lambda b=b: run_static(model, work, b)
        if hf is not None:
            ways[f"HF generate {b}"] = lambda b=b: run_hf(hf, work, b, device)
    run_engine(model, work[:4], args)  # warm up
    names = list(ways)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, object] = {}
    for r in tqdm(range(args.repeats), desc="mixed workload", unit="repeat", file=sys.stderr):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            elapsed, outputs[name] = timed(ways[name], device)
            seconds[name].append(elapsed)
    rate = {n: requested / statistics.median(s) for n, s in seconds.items()}
    same = {n: outputs[n] == outputs["engine"] for n in names}
    return {"requests": len(work), "requested_tokens": requested, "tokens_per_s": rate, "seconds": seconds,
            "same_tokens_as_engine": same}  # fmt: skip


def kv_memory(model, args) -> dict:
    """Pool blocks in use against tokens held and against a contiguous cache of the same running batch."""
    trace: list = []
    run_engine(model, mixed_workload(args.requests, seed=0, vocab_size=model.vocab_size), args, trace)
    busy = [t for t in trace if t[1] > 0]
    held_ratio = [slots / tokens for slots, tokens, _, _ in busy]
    contiguous = [running * longest / tokens for _, tokens, running, longest in busy]
    peak = max(busy, key=lambda t: t[0])
    return {
        "mean_slots_per_token_held": statistics.mean(held_ratio),
        "max_slots_per_token_held": max(held_ratio),
        "at_peak": {"slots": peak[0], "tokens_held": peak[1], "running": peak[2], "longest": peak[3]},
        "contiguous_at_longest_vs_held_mean": statistics.mean(contiguous),
        "contiguous_at_context_vs_held_mean": statistics.mean(
            [running * model.context_length / tokens for _, tokens, running, _ in busy]
        ),
    }


def batch_one(model, hf, args, device) -> dict:
    prompt = torch.randint(0, model.vocab_size, (16,), generator=torch.Generator().manual_seed(1)).tolist()
    new = 64 if args.quick else 256
    work = [Request(prompt, new)]
    ways = {
        "engine": lambda: run_engine(model, work, args),
        "static decoder": lambda: run_static(model, work, 1),
    }
    if hf is not None:
        ways["HF generate"] = lambda: run_hf(hf, work, 1, device)
    for fn in ways.values():
        fn()  # warm up
    names = list(ways)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(3, args.repeats)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(timed(ways[name], device)[0])
    out = {"new_tokens": new, "tokens_per_s": {n: new / statistics.median(s) for n, s in seconds.items()}}
    if device.type == "cpu":
        out["floor"] = weight_streaming_floor(model)
    return out


def weight_streaming_floor(model) -> dict:
    """The decode speed a batch-1 step cannot beat on this CPU: every weight but the token embedding's (one row is
    read) passes through the cores once per token, at the memory read bandwidth (a sum over 512 MiB, best of 5)."""
    weight_bytes = sum(
        p.numel() * p.element_size() for name, p in model.named_parameters() if name != "token_embeddings.weight"
    )
    block = torch.ones(128 * 2**20)  # 512 MiB of float32, far beyond any cache
    best = min(timed(block.sum, torch.device("cpu"))[0] for _ in range(5))
    gbps = block.numel() * 4 / best / 1e9
    return {"weight_bytes": weight_bytes, "read_gb_per_s": gbps, "tokens_per_s": gbps * 1e9 / weight_bytes}


def gpu_decode(model, args, device) -> dict:
    """Decode tok/s at batch 64 and 256 (16-token prompts, 128 new tokens), with and without CUDA graphs."""
    out = {}
    for batch in (64, 256):
        work = [Request(list(range(i, i + 16)), 128) for i in range(batch)]
        for graphs in (False, True):
            engine = Engine(model, max_batch_tokens=max(args.max_batch_tokens, batch * 16), max_num_seqs=batch,
                            cuda_graphs=graphs)  # fmt: skip
            for r in work:
                engine.add_request(r.prompt, SamplingParams(max_new_tokens=r.max_new_tokens))
            engine.step()  # prefill, not timed
            sync(device)
            start, produced = time.perf_counter(), 0
            while engine.has_unfinished:
                produced += sum(e.token is not None for e in engine.step())
            sync(device)
            out[f"batch {batch}, graphs {'on' if graphs else 'off'}"] = produced / (time.perf_counter() - start)
    return out


def print_report(res: dict, args) -> None:
    if "mixed" in res:
        m = res["mixed"]
        print(f"\n{args.preset}, {m['requests']} requests, {m['requested_tokens']} tokens, greedy, {args.device}")
        print(f"{'way':<18} {'tokens/s':>10} {'engine is':>10}  same tokens")
        engine = m["tokens_per_s"]["engine"]
        for name, rate in m["tokens_per_s"].items():
            ratio = "" if name == "engine" else f"{engine / rate:.2f}x"
            print(f"{name:<18} {rate:>10.1f} {ratio:>10}  {'yes' if m['same_tokens_as_engine'][name] else 'NO'}")
    if "kv_memory" in res:
        print_kv(res["kv_memory"])
    if "batch_one" in res:
        print_batch_one(res["batch_one"])
    for name, rate in res.get("gpu_decode", {}).items():
        print(f"decode {name}: {rate:.0f} tok/s")


def print_kv(kv: dict) -> None:
    print(f"KV slots held / tokens held: mean {kv['mean_slots_per_token_held']:.3f}, "
          f"max {kv['max_slots_per_token_held']:.3f}; a contiguous cache of the running batch at its longest "
          f"sequence would hold {kv['contiguous_at_longest_vs_held_mean']:.2f}x the tokens, at the context "
          f"{kv['contiguous_at_context_vs_held_mean']:.2f}x")  # fmt: skip


def print_batch_one(res: dict) -> None:
    one = res["tokens_per_s"]
    line = ", ".join(f"{n} {r:.1f}" for n, r in one.items())
    hf = one.get("HF generate")
    tail = f"; engine / HF {one['engine'] / hf:.2f}x, generate / HF {one['generate'] / hf:.2f}x" if hf else ""
    print(f"batch 1, {res['new_tokens']} new tokens (tok/s): {line}{tail}")
    floor = res.get("floor")
    if floor:
        shares = ", ".join(f"{n} {r / floor['tokens_per_s']:.0%}" for n, r in one.items())
        bound = f"{floor['read_gb_per_s']:.1f} GB/s read = {floor['tokens_per_s']:.1f} tok/s"
        print(f"  weight-streaming bound: {floor['weight_bytes'] / 1e6:.1f} MB of weights per token at {bound}; "
              f"reached: {shares}")  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = {**PRESETS[args.preset], "context_length": 512}
    torch.manual_seed(0)
    model = TransformerLM(**cfg, device=device).eval()
    hf = None if args.no_hf else to_llama(model, attn_implementation="sdpa")
    parts = set(args.parts.split(","))
    res: dict = {}
    if "mixed" in parts:
        res["mixed"] = mixed(model, hf, args, device)
    if "kv" in parts:
        res["kv_memory"] = kv_memory(model, args)
    if "batch1" in parts:
        res["batch_one"] = batch_one(model, hf, args, device)
    if device.type == "cuda":
        res["gpu_decode"] = gpu_decode(model, args, device)
    print_report(res, args)
    if args.json:
        meta = {
            "preset": args.preset,
            "model": cfg,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "args": vars(args) | {"json": str(args.json)},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
