"""Triton paged attention for decoding: one new query per sequence over keys and values kept in fixed-size blocks.

The cache of every layer is a pool of blocks ``(num_blocks, num_kv_heads, block_size, d_head)`` for keys and
one for values; ``pool[block, :, i]`` holds token ``i`` of a block. Sequence ``b`` owns the blocks listed in row ``b``
of a block table and has ``lens[b]`` tokens. One program serves one (sequence, key/value head) pair and all the
query heads that share that key/value head (grouped-query attention): it walks the sequence's blocks through
the block table, computes ``q · kᵀ · scale`` for the block, and folds it into a running softmax (maximum,
normaliser and the weighted sum of values are rescaled whenever the maximum grows), so every key and value is
read once and nothing is gathered. Arithmetic is fp32; the output has the queries' dtype.
"""

import torch
import triton
import triton.language as tl
from jaxtyping import Float, Int

NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def _paged_decode_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    table_ptr,
    lens_ptr,
    out_ptr,
    scale,
    stride_qb,
    stride_qh,
    stride_block,
    stride_kvh,
    stride_tok,
    stride_table,
    stride_ob,
    stride_oh,
    GROUP: tl.constexpr,
    GROUP_P2: tl.constexpr,
    D_HEAD: tl.constexpr,
    D_P2: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
    BLOCK_P2: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    heads = kv_head * GROUP + tl.arange(0, GROUP_P2)  # the query heads reading this key/value head
    head_ok = tl.arange(0, GROUP_P2) < GROUP
    dims = tl.arange(0, D_P2)
    dim_ok = dims < D_HEAD
    q_offsets = seq.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + dims[None, :]
    q = tl.load(q_ptr + q_offsets, mask=head_ok[:, None] & dim_ok[None, :], other=0.0).to(tl.float32)
    length = tl.load(lens_ptr + seq)
    running_max = tl.full([GROUP_P2], NEG_INF, tl.float32)
    normaliser = tl.zeros([GROUP_P2], tl.float32)
    acc = tl.zeros([GROUP_P2, D_P2], tl.float32)
    in_block = tl.arange(0, BLOCK_P2)
    for j in range(0, tl.cdiv(length, BLOCK_SIZE)):
        block = tl.load(table_ptr + seq.to(tl.int64) * stride_table + j).to(tl.int64)
        tokens = j * BLOCK_SIZE + in_block
        token_ok = (in_block < BLOCK_SIZE) & (tokens < length)
        kv_offsets = block * stride_block + kv_head * stride_kvh + in_block[:, None] * stride_tok + dims[None, :]
        kv_mask = token_ok[:, None] & dim_ok[None, :]
        k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)  # (BLOCK_P2, D_P2)
        scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # (GROUP_P2, BLOCK_P2)
        scores = tl.where(token_ok[None, :], scores, NEG_INF)
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))
        probs = tl.exp(scores - new_max[:, None])
        rescale = tl.exp(running_max - new_max)
        v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0).to(tl.float32)  # (BLOCK_P2, D_P2)
        acc = acc * rescale[:, None] + tl.sum(probs[:, :, None] * v[None, :, :], axis=1)
        normaliser = normaliser * rescale + tl.sum(probs, axis=1)
        running_max = new_max
    out = acc / normaliser[:, None]
    out_offsets = seq.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + dims[None, :]
    tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=head_ok[:, None] & dim_ok[None, :])


def triton_paged_decode(
    q: Float[torch.Tensor, "seqs num_heads d_head"],
    k_pool: Float[torch.Tensor, "blocks num_kv_heads block_size d_head"],
    v_pool: Float[torch.Tensor, "blocks num_kv_heads block_size d_head"],
    block_tables: Int[torch.Tensor, "seqs max_blocks"],
    lens: Int[torch.Tensor, " seqs"],
    scale: float,
) -> Float[torch.Tensor, "seqs num_heads d_head"]:
    """``softmax(q kᵀ · scale) v`` of each sequence's one query over its ``lens[b]`` cached tokens (all visible).

    ``block_tables[b, j]`` is the pool block holding tokens ``j·block_size …`` of sequence ``b``; entries past a
    sequence's last block are never read. Every length must be at least 1.
    """
    seqs, num_heads, d_head = q.shape
    num_kv_heads, block_size = k_pool.shape[1], k_pool.shape[2]
    if num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads do not group over {num_kv_heads} key/value heads")
    if (
        k_pool.shape != v_pool.shape
        or k_pool.stride() != v_pool.stride()
        or k_pool.dim() != 4
        or k_pool.shape[-1] != d_head
        or k_pool.stride(-1) != 1
    ):
        raise ValueError(f"pools {tuple(k_pool.shape)} / {tuple(v_pool.shape)} do not fit queries {tuple(q.shape)}")
    q = q.contiguous()
    out = torch.empty_like(q)
    if seqs == 0:
        return out
    group = num_heads // num_kv_heads
    _paged_decode_kernel[(seqs, num_kv_heads)](
        q,
        k_pool,
        v_pool,
        block_tables,
        lens,
        out,
        float(scale),
        q.stride(0),
        q.stride(1),
        k_pool.stride(0),
        k_pool.stride(1),
        k_pool.stride(2),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        GROUP=group,
        GROUP_P2=max(triton.next_power_of_2(group), 1),
        D_HEAD=d_head,
        D_P2=triton.next_power_of_2(d_head),
        BLOCK_SIZE=block_size,
        BLOCK_P2=triton.next_power_of_2(block_size),
        num_warps=4,
    )
    return out
