"""One decoding sequence's attention through the paged cache beside the same attention over a contiguous cache.

Batch-1 decoding through the engine trailed the static decoder (docs/benchmarks.md) by the cost of reading a
block pool. This measures one layer's attention step for a lone sequence — the new token's key and value written,
then its query over every key so far — at the tinystories-17m shape (16 heads of 32) on one thread, three ways:

* ``contiguous``  — what the static decoder (``scripts/static_batch.py``) does: the key and value written into a
  (heads, tokens, d_head) buffer and ``attention.attend`` over it;
* ``mirrored``    — the engine's step for a sequence decoding alone (``PagedLayer.attend`` in
  ``cs336_lm.nn.paged``): the key and value written into the pool and into the sequence's contiguous mirror
  (``LoneMirror``), then ``attention.attend`` over the mirror;
* ``in place bs=B`` — the same token read from the pool's blocks in place (``DecodePlan``), what a lone sequence
  pays in a step shared with a prompt chunk, and what every step paid before the mirror: the pool is
  (blocks, heads, block_size, d_head), so the scores are a batched matmul of blocks × heads small products.

All three give the same output (checked). Times are the best of ``--repeats`` loops of ``--iters`` calls, in µs.

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
from cs336_lm.nn.attention import MultiHeadSelfAttention
from cs336_lm.nn.paged import DecodePlan, PagedBatch, PagedKVCache


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


def paged_layer(k: torch.Tensor, v: torch.Tensor, size: int, attention: MultiHeadSelfAttention, *, mirrored: bool):
    """Layer 0 of a pool holding the ``length`` tokens of ``k``/``v`` (heads, length, d_head) in blocks 1 … W, and a
    batch whose one new token is the last of them: decoded over the mirror or over the blocks in place."""
    heads, length, d = k.shape
    width = math.ceil(length / size)
    cache = PagedKVCache(1, heads, d, width + 1, size)
    cache.ensure_zeroed(width + 1)
    for pool, tensor in ((cache.keys[0], k), (cache.values[0], v)):
        for t in range(length):
            pool[1 + t // size, :, t % size] = tensor[:, t]
    table = list(range(1, width + 1))
    batch = PagedBatch(cache)
    batch.write_slot, batch.num_decode = (width, (length - 1) % size), 1
    if mirrored:
        cache.mirror.extend(table, length, size)  # sized and rebuilt from the pool by the first call
        batch.mirrored = 0
        batch.layer(0).attend(*(t[None, :, -1:] for t in (k, k, v)), attention)
        batch.mirrored = length - 1  # from then on every call appends, as a decode step does
    else:
        batch.plan = DecodePlan.build([table], [length], size, cache.device)
    return batch.layer(0)


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
    heads, d = args.heads, args.d_head
    attention = MultiHeadSelfAttention(heads * d, heads, attention="reference")
    rows = []
    print(f"{'tokens':>6} {'way':<16} {'µs':>8} {'× contiguous':>13}")
    with torch.inference_mode():
        for length in (int(x) for x in args.lengths.split(",")):
            q, k, v = torch.randn(1, heads, 1, d), torch.randn(heads, length, d), torch.randn(heads, length, d)
            new_k, new_v = k[None, :, -1:], v[None, :, -1:]
            buffers = [torch.zeros(heads, length + 64, d) for _ in range(2)]
            buffers[0][:, :length], buffers[1][:, :length] = k, v

            def contiguous(q=q, new=(new_k, new_v), keys=buffers[0], values=buffers[1], n=length):
                keys[:, n - 1 : n], values[:, n - 1 : n] = new[0][0], new[1][0]
                return attention.attend(q, keys[None, :, :n], values[None, :, :n], q_offset=n - 1)

            reference = contiguous()
            base = best_us(contiguous, args.iters, args.repeats)
            row = {"tokens": length, "contiguous_us": base, "mirrored_us": {}, "in_place_us": {}}
            print(f"{length:>6} {'contiguous':<16} {base:>8.1f} {1:>13.2f}")
            for size in (int(x) for x in args.block_sizes.split(",")):
                for way, mirrored in (("mirrored", True), ("in place", False)):
                    layer = paged_layer(k, v, size, attention, mirrored=mirrored)

                    def paged(layer=layer, q=q, new=(new_k, new_v)):
                        return layer.attend(q, *new, attention)

                    torch.testing.assert_close(paged(), reference, rtol=1e-4, atol=1e-5)
                    us = best_us(paged, args.iters, args.repeats)
                    row[f"{way.replace(' ', '_')}_us"][size] = us
                    print(f"{length:>6} {f'{way} bs={size}':<16} {us:>8.1f} {us / base:>13.2f}")
            rows.append(row)
    if args.json:
        meta = {"heads": heads, "d_head": d, "torch": torch.__version__, "machine": platform.machine()}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
