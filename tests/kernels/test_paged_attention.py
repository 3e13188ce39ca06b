"""The Triton paged-attention decode kernel against attention over keys gathered into one contiguous tensor."""

import math

import pytest
import torch

pytest.importorskip("triton")

from cs336_lm.kernels.paged_attention import triton_paged_decode


def reference(q, k_pool, v_pool, tables, lens, scale):
    """Each sequence alone: gather its tokens' keys and values through the block table, torch's softmax."""
    out = torch.empty(q.shape, dtype=torch.float32)
    group = q.shape[1] // k_pool.shape[1]
    block_size = k_pool.shape[2]
    for b, n in enumerate(lens.tolist()):
        blocks = [tables[b, t // block_size].item() for t in range(n)]
        k = torch.stack([k_pool[blk, :, t % block_size] for t, blk in enumerate(blocks)])  # (n, kv_heads, d)
        v = torch.stack([v_pool[blk, :, t % block_size] for t, blk in enumerate(blocks)])
        k = k.float().repeat_interleave(group, dim=1)  # (n, heads, d)
        v = v.float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,thd->ht", q[b].float(), k) * scale
        out[b] = torch.einsum("ht,thd->hd", torch.softmax(scores, -1), v)
    return out


def random_case(lens, heads, kv_heads, d_head, block_size, dtype, seed):
    """A pool with more blocks than the sequences use, handed out in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    per_seq = [math.ceil(n / block_size) for n in lens]
    num_blocks = sum(per_seq) + 3
    order = torch.randperm(num_blocks, generator=g).tolist()
    tables = torch.zeros(len(lens), max(per_seq) + 2, dtype=torch.int32)  # trailing entries never read
    for b, count in enumerate(per_seq):
        tables[b, :count] = torch.tensor([order.pop() for _ in range(count)])
    k_pool = torch.randn(num_blocks, kv_heads, block_size, d_head, generator=g).to(dtype)
    v_pool = torch.randn(num_blocks, kv_heads, block_size, d_head, generator=g).to(dtype)
    q = torch.randn(len(lens), heads, d_head, generator=g).to(dtype)
    return q, k_pool, v_pool, tables, torch.tensor(lens, dtype=torch.int32)


@pytest.mark.parametrize(
    ("lens", "heads", "kv_heads", "d_head", "block_size"),
    [
        ([1], 4, 4, 16, 16),  # one token in one block
        ([16, 17, 33], 4, 4, 32, 16),  # exactly full, one over, odd block counts
        ([5, 40, 3, 64], 8, 2, 32, 16),  # groups of 4 query heads per key/value head
        ([7, 9], 6, 1, 24, 8),  # multi-query attention, a head size that is not a power of two
        ([30], 3, 3, 16, 5),  # a block size that is not a power of two
    ],
    ids=str,
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_paged_decode_matches_gathered_attention(target, lens, heads, kv_heads, d_head, block_size, dtype):
    q, k_pool, v_pool, tables, lengths = random_case(lens, heads, kv_heads, d_head, block_size, dtype, seed=len(lens))
    scale = d_head**-0.5
    on = [t.to(target.device) for t in (q, k_pool, v_pool, tables, lengths)]
    got = triton_paged_decode(*on, scale)
    want = reference(q, k_pool, v_pool, tables, lengths, scale)
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    assert got.dtype == dtype
    torch.testing.assert_close(got.float().cpu(), want, atol=tolerance, rtol=tolerance)


def test_mismatched_heads_are_refused():
    q, k_pool, v_pool, tables, lengths = random_case([3], 6, 4, 16, 16, torch.float32, 0)
    with pytest.raises(ValueError, match="do not group"):
        triton_paged_decode(q, k_pool, v_pool, tables, lengths, 0.25)
