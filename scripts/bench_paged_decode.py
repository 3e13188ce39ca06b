"""One decoding sequence's attention over the paged cache beside the same attention over a contiguous cache.

Batch-1 decoding through the engine trails the static decoder (docs/benchmarks.md); this measures the part of the
gap that is the attention itself. For each context length, one layer's decode attention of the tinystories-17m
shape (16 heads of 32) on one thread:

* ``contiguous``  — the reference attention over keys and values laid out (heads, tokens, d_head), what the
  static decoder's cache holds: one batched matmul of 16 for the scores, one for the output;
* ``paged bs=B``  — the engine's CPU path for a lone sequence whose blocks are consecutive (``_decode_run`` in
  ``cs336_lm.nn.paged``): the pool is (blocks, heads, block_size, d_head), so the scores are a batched matmul of
  blocks × heads small products, and the softmax runs over blocks and slots together.

Both give the same output (checked). Times are the best of ``--repeats`` loops of ``--iters`` calls, in µs.

    python scripts/bench_paged_decode.py
    python scripts/bench_paged_decode.py --lengths 64,256 --block-sizes 16 --json out.json
"""

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cs336_lm.nn.paged import DecodePlan, _decode_run


def best_us(fn, iters: int, repeats: int) -> float:
    for _ in range(iters // 10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - start) / iters * 1e6)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lengths", default="64,160,256,400", help="context lengths (tokens in the cache)")
    p.add_argument("--block-sizes", default="16,64", help="paged block sizes (the engine's default is 16)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--d-head", type=int, default=32)
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    heads, d, scale = args.heads, args.d_head, 1 / math.sqrt(args.d_head)
    rows = []
    print(f"{'tokens':>6} {'way':<14} {'µs':>8} {'× contiguous':>13}")
    for length in (int(x) for x in args.lengths.split(",")):
        q = torch.randn(heads, 1, d)
        k, v = torch.randn(heads, length, d), torch.randn(heads, length, d)

        def contiguous(q=q, k=k, v=v):
            return torch.softmax((q @ k.transpose(-2, -1)) * scale, -1) @ v

        base = best_us(contiguous, args.iters, args.repeats)
        row = {"tokens": length, "contiguous_us": base, "paged_us": {}}
        print(f"{length:>6} {'contiguous':<14} {base:>8.1f} {1:>13.2f}")
        for size in (int(x) for x in args.block_sizes.split(",")):
            width = math.ceil(length / size)
            pools = []
            for tensor in (k, v):  # the same keys and values in blocks 1 … width of a pool
                pool = torch.zeros(width + 1, heads, size, d)
                for w in range(width):
                    block = tensor[:, w * size : (w + 1) * size]
                    pool[1 + w, :, : block.shape[1]] = block
                pools.append(pool[1:])
            plan = DecodePlan(width=width, run=slice(1, 1 + width), length=length)

            def paged(q=q, pools=pools, plan=plan):
                return _decode_run(q, pools[0], pools[1], plan, scale)

            torch.testing.assert_close(paged().view(heads, d), contiguous().view(heads, d), rtol=1e-4, atol=1e-5)
            us = best_us(paged, args.iters, args.repeats)
            row["paged_us"][size] = us
            print(f"{length:>6} {f'paged bs={size}':<14} {us:>8.1f} {us / base:>13.2f}")
        rows.append(row)
    if args.json:
        meta = {"heads": heads, "d_head": d, "torch": torch.__version__, "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
