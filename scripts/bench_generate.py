"""Decode speed of ``cs336_lm.engine.complete`` beside HuggingFace ``LlamaForCausalLM.generate`` on the same weights.

Greedy decoding of ``--new-tokens`` tokens after a ``--prompt-len``-token prompt at the tinystories-17m
shape (random weights; the context is raised to 512 so prompt and output fit). Four ways, taking turns
inside every repeat (rotating order) so load from other processes hits all of them alike:

* ``ours (engine)``    — ``complete``: the engine's one decode loop over its paged KV cache;
* ``static decoder``   — the static-batch decoder with a contiguous cache that the engine replaced
  (``scripts/static_batch.py``), kept as the baseline the one loop must not fall behind;
* ``ours (no cache)``  — the static loop re-running the whole sequence at every step (batch 1 only: at batch 8
  it would take minutes);
* ``HF generate``      — ``LlamaForCausalLM.generate(use_cache=True, do_sample=False)``, exactly
  ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``, no EOS), sdpa attention, built with
  ``cs336_lm.interop.hf_llama.to_llama`` from our model (so both produce the same tokens; checked).

Tokens/s = batch × new tokens / wall seconds (prefill included), medians over repeats, with ratios.

    python scripts/bench_generate.py                     # batch 1 and 8, 256 new tokens, on CPU
    python scripts/bench_generate.py --quick --json out.json
    python scripts/bench_generate.py --device cuda
"""

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
from static_batch import complete_static

from cs336_lm.engine import complete
from cs336_lm.interop.hf_llama import to_llama
from cs336_lm.nn import PRESETS, TransformerLM


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--preset", default="tinystories-17m", choices=sorted(PRESETS))
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per way and batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="64 new tokens, 1 repeat, batch 1: a smoke run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.new_tokens, args.repeats, args.batch_sizes = 64, 1, "1"
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(model, prompts: torch.Tensor, new_tokens: int) -> list[list[int]]:
    return [row.tokens for row in complete(model, prompts.tolist(), new_tokens, temperature=0)]


def static(model, prompts: torch.Tensor, new_tokens: int, use_cache: bool) -> list[list[int]]:
    return [row.tokens for row in complete_static(model, prompts.tolist(), new_tokens, use_cache=use_cache)]


def hf_generate(hf, prompts: torch.Tensor, new_tokens: int) -> list[list[int]]:
    with torch.inference_mode():
        out = hf.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[:, prompts.shape[1] :].tolist()


def timed(fn, device: torch.device) -> tuple[float, list[list[int]]]:
    sync(device)
    start = time.perf_counter()
    tokens = fn()
    sync(device)
    return time.perf_counter() - start, tokens


OURS, STATIC = "ours (engine)", "static decoder"


def make_ways(model, hf, prompts: torch.Tensor, new_tokens: int, batch: int) -> dict:
    ways = {
        OURS: lambda: ours(model, prompts, new_tokens),
        STATIC: lambda: static(model, prompts, new_tokens, True),
        "HF generate": lambda: hf_generate(hf, prompts, new_tokens),
    }
    if batch == 1:
        ways["ours (no cache)"] = lambda: static(model, prompts, new_tokens, False)
    return ways


def bench_batch(model, hf, batch: int, args, device: torch.device) -> dict:
    """Interleaved timed runs of every way at one batch size; medians, ratios and the token check."""
    g = torch.Generator().manual_seed(batch)
    prompts = torch.randint(0, model.vocab_size, (batch, args.prompt_len), generator=g).to(device)
    ways = make_ways(model, hf, prompts, args.new_tokens, batch)
    names = list(ways)
    for warm_up in make_ways(model, hf, prompts, 8, batch).values():  # allocator, lazy init, HF's setup
        warm_up()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[list[int]]] = {}
    for r in tqdm(range(args.repeats), desc=f"batch {batch}", unit="repeat", file=sys.stderr):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            elapsed, outputs[name] = timed(ways[name], device)
            seconds[name].append(elapsed)
    rate = {name: batch * args.new_tokens / statistics.median(s) for name, s in seconds.items()}
    result = {
        "batch": batch,
        "tokens_per_s": rate,
        "seconds": seconds,
        "same_tokens_as_hf": outputs[OURS] == outputs["HF generate"],
        "same_tokens_as_static": outputs[OURS] == outputs[STATIC],
        "ours_vs_hf": rate[OURS] / rate["HF generate"],
        "static_vs_hf": rate[STATIC] / rate["HF generate"],
    }
    if "ours (no cache)" in rate:
        result["cache_vs_no_cache"] = rate[OURS] / rate["ours (no cache)"]
        result["same_tokens_without_cache"] = outputs["ours (no cache)"] == outputs[OURS]
    return result


def print_table(results: list[dict], args) -> None:
    print(
        f"\n{args.preset} shape, prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy, {args.device}"
    )
    print(f"{'batch':>5}  {'way':<17} {'tokens/s':>10}")
    for res in results:
        for name, rate in res["tokens_per_s"].items():
            print(f"{res['batch']:>5}  {name:<17} {rate:>10.1f}")
        line = f"       ours / HF generate = {res['ours_vs_hf']:.2f}x (static decoder {res['static_vs_hf']:.2f}x)"
        if "cache_vs_no_cache" in res:
            line += f"; KV cache / no cache = {res['cache_vs_no_cache']:.2f}x"
        print(line + f"; same tokens as HF: {'yes' if res['same_tokens_as_hf'] else 'NO'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = {**PRESETS[args.preset], "context_length": max(512, args.prompt_len + args.new_tokens)}
    torch.manual_seed(0)
    model = TransformerLM(**cfg, device=device).eval()
    hf = to_llama(model, attn_implementation="sdpa")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    results = [bench_batch(model, hf, b, args, device) for b in batches]
    print_table(results, args)
    if args.json:
        meta = {
            "preset": args.preset,
            "model": cfg,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "repeats": args.repeats,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.machine(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
