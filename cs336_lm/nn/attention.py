"""Causal multi-head self-attention with rotary positions and two interchangeable attention backends.

``reference`` is our own math: scores ``Q Kᵀ`` → causal softmax (through the kernel dispatch, so the
Triton kernel runs on CUDA) → ``· V``. ``sdpa`` calls ``torch.nn.functional.scaled_dot_product_attention``,
the fused baseline. The pieces (projections, ``split_heads``, ``rope``, ``attend``, ``merge_heads``) are
separate so a KV-cache decoder can reuse them around its own cache.
"""

import math

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336_lm.nn import dispatch
from cs336_lm.nn import functional as F
from cs336_lm.nn.layers import Linear, RotaryPositionalEmbedding

ATTENTION_BACKENDS = ("reference", "sdpa")
# On CPU the reference path works through the batch in slices whose fp32 score tensor stays under this size.
# A fresh buffer above ~32 MiB comes from mmap on every call and pays a page fault per 4 KiB page (measured:
# 40% of the attention core's time at batch 8 × 16 heads × 256²); slices this small reuse the allocator's memory.
CPU_SCORES_BYTES_PER_SLICE = 8 * 2**20


class MultiHeadSelfAttention(nn.Module):
    """``MHA(x) = W_O · concat_h softmax(Q_h K_hᵀ / sqrt(d_head) + causal) V_h`` (Vaswani et al. 2017).

    ``q_proj``/``k_proj``/``v_proj``/``output_proj`` are (d_model, d_model) Linears whose rows are ordered
    head by head (rows ``h·d_head … (h+1)·d_head − 1`` belong to head h). RoPE is applied to queries and
    keys iff ``theta`` is given (then ``max_seq_len`` sizes its cache and ``self.rope`` is set, else None).

    A KV-cache decoder can run the same math step by step::

        q = attn.split_heads(attn.q_proj(x))            # (batch, num_heads, new, d_head); same for k, v
        q, k = attn.rope(q, pos), attn.rope(k, pos)     # pos: (new,) or (batch, 1, new) absolute positions
        out = attn.attend(q, k_all, v_all, q_offset=past_len)   # keys: cached + new
        y = attn.output_proj(attn.merge_heads(out))     # (batch, new, d_model)
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int | None = None,
        theta: float | None = None,
        device=None,
        dtype=None,
        *,
        attention: str = "reference",
        kernels: str = "auto",
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {ATTENTION_BACKENDS}, got {attention!r}")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.attention, self.kernels = attention, dispatch.check_backend(kernels)
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.rope = None
        if theta is not None:
            if max_seq_len is None:
                raise ValueError("RoPE (theta given) needs max_seq_len to size its cos/sin cache")
            self.rope = RotaryPositionalEmbedding(theta, self.d_head, max_seq_len, device=device)

    def split_heads(self, x: Float[Tensor, "batch seq d_model"]) -> Float[Tensor, "batch num_heads seq d_head"]:
        """(batch, seq, d_model) → (batch, num_heads, seq, d_head), head h taking features h·d_head…"""
        return rearrange(x, "... seq (h d) -> ... h seq d", h=self.num_heads)

    def merge_heads(self, x: Float[Tensor, "batch num_heads seq d_head"]) -> Float[Tensor, "batch seq d_model"]:
        """Inverse of ``split_heads``: (batch, num_heads, seq, d_head) → (batch, seq, d_model)."""
        return rearrange(x, "... h seq d -> ... seq (h d)")

    def attend(
        self,
        q: Float[Tensor, "batch num_heads q_len d_head"],
        k: Float[Tensor, "batch num_heads k_len d_head"],
        v: Float[Tensor, "batch num_heads k_len d_head"],
        q_offset: int = 0,
    ) -> Float[Tensor, "batch num_heads q_len d_head"]:
        """Causal ``softmax(q kᵀ / sqrt(d_head)) v`` where query i sits at key position ``q_offset + i``.

        ``q_offset = k_len − q_len`` when the keys hold a cache of earlier tokens followed by the queries'.
        """
        scale = 1.0 / math.sqrt(q.shape[-1])
        if self.attention == "sdpa":
            return _torch_sdpa(q, k, v, scale, q_offset)
        rows = _rows_per_slice(q, k)
        if rows >= q.shape[0]:
            return self._reference_attend(q, k, v, scale, q_offset)
        slices = [slice(i, i + rows) for i in range(0, q.shape[0], rows)]
        return torch.cat([self._reference_attend(q[s], k[s], v[s], scale, q_offset) for s in slices])

    def _reference_attend(self, q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int) -> Tensor:
        """Our own math: ``causal_softmax(scale · q kᵀ) v``, the softmax through the kernel dispatch."""
        scores = q @ k.transpose(-2, -1)  # (batch, num_heads, q_len, k_len), unscaled
        probs = dispatch.causal_softmax(scores, scale, q_offset, backend=self.kernels)
        return probs @ v

    def forward(
        self, x: Float[Tensor, "batch seq d_model"], token_positions: Int[Tensor, "... seq"] | None = None
    ) -> Float[Tensor, "batch seq d_model"]:
        """Causal self-attention over ``x``; ``token_positions`` ((seq,) or (batch, seq)) default to 0…seq−1."""
        q = self.split_heads(self.q_proj(x))  # (batch, num_heads, seq, d_head)
        k = self.split_heads(self.k_proj(x))
        v = self.split_heads(self.v_proj(x))
        if self.rope is not None:
            positions = head_positions(token_positions, x.shape[-2], x.device)
            q, k = self.rope(q, positions), self.rope(k, positions)
        return self.output_proj(self.merge_heads(self.attend(q, k, v)))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, d_head={self.d_head}, attention={self.attention!r}"


def head_positions(token_positions: Tensor | None, seq_len: int, device=None) -> Tensor:
    """Positions that broadcast over (batch, num_heads, seq): None → arange(seq), (batch, seq) → (batch, 1, seq)."""
    if token_positions is None:
        return torch.arange(seq_len, device=device)
    if token_positions.dim() >= 2:
        return token_positions.unsqueeze(-2)  # (batch, 1, seq)
    return token_positions


def _rows_per_slice(q: Tensor, k: Tensor) -> int:
    """How many batch rows of the reference attention to run at once (all of them off the CPU)."""
    if q.device.type != "cpu" or q.dim() < 3:
        return q.shape[0]
    score_bytes_per_row = q[0, ..., :1].numel() * k.shape[-2] * 4  # (num_heads, q_len, k_len) in fp32
    return max(1, CPU_SCORES_BYTES_PER_SLICE // score_bytes_per_row)


def _torch_sdpa(q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int) -> Tensor:
    """The fused PyTorch kernel (the one sanctioned use of torch.nn.functional, as a baseline)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if q_offset == 0 and q.shape[-2] == k.shape[-2]:
        return sdpa(q, k, v, is_causal=True, scale=scale)
    if q.shape[-2] == 1 and q_offset >= k.shape[-2] - 1:  # one new token that sees every key
        return sdpa(q, k, v, scale=scale)
    mask = F.causal_mask(q.shape[-2], k.shape[-2], q_offset, q.device)  # (q_len, k_len), True = may attend
    return sdpa(q, k, v, attn_mask=mask, scale=scale)
