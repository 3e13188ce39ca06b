"""Causal self-attention with rotary positions, grouped-query heads and two interchangeable attention backends.

``reference`` is our own math: scores ``Q Kᵀ`` → causal softmax (through the kernel dispatch, so the Triton
kernel runs on CUDA) → ``· V``. ``sdpa`` calls ``torch.nn.functional.scaled_dot_product_attention``, the fused
baseline. With ``num_kv_heads < num_heads`` (grouped-query attention, Ainslie et al. 2023) each key/value head
serves ``num_heads / num_kv_heads`` query heads; ``num_kv_heads == 1`` is multi-query attention.

One forward serves training and decoding: without a cache the queries attend causally to the keys of the same
call; with a ``kv_cache`` (``cs336_lm.nn.cache``) the new keys and values are handed to the cache, which stores
them and runs ``attend`` — the same backend — over everything cached for each sequence.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from cs336_lm.nn import dispatch
from cs336_lm.nn import functional as F
from cs336_lm.nn.layers import Linear, RMSNorm, RotaryPositionalEmbedding, fused_inference_weight

if TYPE_CHECKING:
    from cs336_lm.nn.cache import LayerKVCache

ATTENTION_BACKENDS = ("reference", "sdpa")
# On CPU the reference path works through the batch in slices whose fp32 score tensor stays under this size.
# A fresh buffer above ~32 MiB comes from mmap on every call and pays a page fault per 4 KiB page (measured:
# 40% of the attention core's time at batch 8 × 16 heads × 256²); slices this small reuse the allocator's memory.
CPU_SCORES_BYTES_PER_SLICE = 8 * 2**20
# ... and causal attention over more queries than this goes tile by tile (measured at 256 tokens, fwd + bwd of the
# attention core: 1.9x faster than one block; tiles of 32 and 128 were slower than 64).
CPU_CAUSAL_TILE = 64


class MultiHeadSelfAttention(nn.Module):
    """``MHA(x) = W_O · concat_h softmax(Q_h K_{g(h)}ᵀ / sqrt(d_head) + causal) V_{g(h)}`` (Vaswani et al. 2017).

    ``q_proj`` and ``output_proj`` are (d_model, d_model); ``k_proj``/``v_proj`` are (num_kv_heads·d_head,
    d_model). Rows are ordered head by head (rows ``h·d_head … (h+1)·d_head − 1`` belong to head h); query head h
    reads key/value head ``g(h) = h // (num_heads / num_kv_heads)``. RoPE is applied to queries and keys iff
    ``theta`` is given (then ``max_seq_len`` sizes its cache and ``self.rope`` is set, else None). With ``qk_norm``,
    ``q_norm`` and ``k_norm`` (RMSNorms of width d_head) normalise each head's query and key before RoPE (Qwen3);
    else both are None.
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
        num_kv_heads: int | None = None,
        attention: str = "reference",
        kernels: str = "auto",
        qk_norm: bool = False,
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {ATTENTION_BACKENDS}, got {attention!r}")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.num_kv_heads = num_kv_heads
        self.attention, self.kernels = attention, dispatch.check_backend(kernels)
        kv_width = num_kv_heads * self.d_head
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, kv_width, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, kv_width, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.q_norm = self.k_norm = None
        if qk_norm:
            self.q_norm = RMSNorm(self.d_head, device=device, dtype=dtype, kernels=kernels)
            self.k_norm = RMSNorm(self.d_head, device=device, dtype=dtype, kernels=kernels)
        self.rope = None
        if theta is not None:
            if max_seq_len is None:
                raise ValueError("RoPE (theta given) needs max_seq_len to size its cos/sin cache")
            self.rope = RotaryPositionalEmbedding(theta, self.d_head, max_seq_len, device=device)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "batch seq d_model"]:
        """Causal self-attention over ``x``; ``token_positions`` ((seq,) or (batch, seq)) default to 0…seq−1.

        With ``kv_cache`` the new keys and values go into the cache and each query attends to its own sequence's
        cached keys up to its position (the cache decides which sequence a row or token belongs to).
        """
        q, k, v = self.project(x, token_positions)  # (batch, heads, seq, d_head); k, v with num_kv_heads heads
        out = self.attend(q, k, v) if kv_cache is None else kv_cache.attend(q, k, v, self)
        return self.output_proj(self.merge_heads(out))

    def project(
        self, x: Float[Tensor, "batch seq d_model"], token_positions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``RoPE(x W_Qᵀ)``, ``RoPE(x W_Kᵀ)`` and ``x W_Vᵀ`` split into heads: (batch, heads, seq, d_head) each
        (with ``qk_norm``: ``RoPE(RMSNorm(·))`` of each head's query and key).

        Decoding on a CPU (inference mode) multiplies by one fused (d_model, (heads + 2·kv heads)·d_head) copy of
        the three weights, laid out (in, out), and rotates queries and keys in one pass: fewer, faster ops.
        """
        if x.device.type == "cpu" and torch.is_inference_mode_enabled():
            return self._project_fused(x, token_positions)
        q = self.split_heads(self.q_proj(x), self.q_norm)
        k = self.split_heads(self.k_proj(x), self.k_norm)
        v = self.split_heads(self.v_proj(x))
        if self.rope is not None:
            positions = head_positions(token_positions, x.shape[-2], x.device)
            q, k = self.rope.rotate_both(q, k, positions)  # RoPE(q), RoPE(k) at the tokens' positions
        return q, k, v

    def _project_fused(self, x: Tensor, token_positions: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        weight = fused_inference_weight(self, (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
        fused = x @ weight  # (batch, seq, (heads + 2·kv_heads)·d_head)
        heads = fused.view(*fused.shape[:-1], -1, self.d_head)  # (batch, seq, heads + 2·kv_heads, d_head)
        qk, v = heads.split((self.num_heads + self.num_kv_heads, self.num_kv_heads), dim=-2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = qk.split((self.num_heads, self.num_kv_heads), dim=-2)
            qk = torch.cat((self.q_norm(q), self.k_norm(k)), dim=-2)  # (batch, seq, heads + kv_heads, d_head)
        if self.rope is not None:
            positions = token_positions if token_positions is not None else torch.arange(x.shape[-2])
            qk = self.rope(qk, positions.unsqueeze(-1))  # positions (..., seq, 1) broadcast over the heads
        q, k = qk.split((self.num_heads, self.num_kv_heads), dim=-2)
        return q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)  # (batch, heads, seq, d_head)

    def split_heads(
        self, x: Float[Tensor, "batch seq width"], norm: RMSNorm | None = None
    ) -> Float[Tensor, "batch heads seq d_head"]:
        """(batch, seq, heads·d_head) → (batch, heads, seq, d_head), head h taking features h·d_head…; ``norm``
        (of width d_head), when given, normalises each head's vector on the way."""
        heads = x.view(*x.shape[:-1], -1, self.d_head)  # "... seq (h d) -> ... seq h d"
        if norm is not None:
            heads = norm(heads)
        return heads.transpose(-3, -2)  # "... seq h d -> ... h seq d"

    def merge_heads(self, x: Float[Tensor, "batch num_heads seq d_head"]) -> Float[Tensor, "batch seq d_model"]:
        """Inverse of ``split_heads``: (batch, num_heads, seq, d_head) → (batch, seq, d_model)."""
        return x.transpose(-3, -2).flatten(-2)  # "... h seq d -> ... seq (h d)"

    def attend(
        self,
        q: Float[Tensor, "batch num_heads q_len d_head"],
        k: Float[Tensor, "batch num_kv_heads k_len d_head"],
        v: Float[Tensor, "batch num_kv_heads k_len d_head"],
        q_offset: int = 0,
        mask: Bool[Tensor, "batch 1 q_len k_len"] | None = None,
    ) -> Float[Tensor, "batch num_heads q_len d_head"]:
        """Causal ``softmax(q kᵀ / sqrt(d_head)) v`` where query i sits at key position ``q_offset + i``.

        ``q_offset = k_len − q_len`` when the keys hold a cache of earlier tokens followed by the queries'.
        ``mask`` (broadcast to (batch, 1, q_len, k_len), True = may attend) hides more keys, e.g. padding or
        the unused end of a gathered cache; every query must keep at least one key.
        """
        scale = 1.0 / math.sqrt(q.shape[-1])
        if self.attention == "sdpa":
            return _torch_sdpa(q, k, v, scale, q_offset, mask)
        q_len = q.shape[-2]
        if q.device.type != "cpu" or mask is not None or q_len <= CPU_CAUSAL_TILE:
            return self._sliced(q, k, v, scale, q_offset, mask)
        if q.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu"):
            return _TiledCausalAttention.apply(q, k, v, scale, q_offset)
        # Under autocast: the same tiles through autograd (the Function above would see the autocast dtypes).
        tiles = [
            self._sliced(q[..., start:stop, :], k[..., :keys, :], v[..., :keys, :], scale, q_offset + start, None)
            for start, stop, keys in _causal_tiles(q_len, q_offset)
        ]
        return torch.cat(tiles, dim=-2)

    def _sliced(self, q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int, mask: Tensor | None) -> Tensor:
        """``_reference_attend`` over the batch in slices whose scores stay small on a CPU."""
        rows = _rows_per_slice(q, k)
        if rows >= q.shape[0]:
            return self._reference_attend(q, k, v, scale, q_offset, mask)
        parts = []
        for i in range(0, q.shape[0], rows):
            s = slice(i, i + rows)
            part_mask = mask if mask is None or mask.shape[0] == 1 else mask[s]
            parts.append(self._reference_attend(q[s], k[s], v[s], scale, q_offset, part_mask))
        return torch.cat(parts)

    def _reference_attend(
        self, q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int, mask: Tensor | None
    ) -> Tensor:
        """Our own math: ``causal_softmax(scale · q kᵀ) v``, the softmax through the kernel dispatch.

        Grouped heads: the ``g`` query heads of a key/value head are stacked along the query axis, so one
        batched matmul per key/value head serves all of them and keys are never repeated in memory.
        """
        batch, heads, q_len, d_head = q.shape
        kv_heads = k.shape[1]
        group = heads // kv_heads
        grouped = q.reshape(batch, kv_heads, group * q_len, d_head)  # (batch, kv_heads, g·q, d_head)
        scores = (grouped @ k.transpose(-2, -1)).view(batch, kv_heads, group, q_len, -1)  # (b, kvh, g, q, k)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(2), -math.inf)  # mask (b, 1, q, k) → (b, 1, 1, q, k)
        probs = dispatch.causal_softmax(scores, scale, q_offset, backend=self.kernels)
        out = probs.view(batch, kv_heads, group * q_len, -1) @ v  # (batch, kv_heads, g·q, d_head)
        return out.view(batch, heads, q_len, d_head)

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        rope = "" if self.rope is not None else ", no position encoding"
        return f"num_heads={self.num_heads}{kv}, d_head={self.d_head}, attention={self.attention!r}{rope}"


class _TiledCausalAttention(torch.autograd.Function):
    """Causal attention on a CPU, query tile by query tile, with a hand-written backward.

    Tile ``t`` (``CPU_CAUSAL_TILE`` queries) sees only the keys up to its last query, so the scores above the
    causal diagonal are never computed (10 of 16 score blocks at 256 tokens) and each tile's scores stay in cache.
    The forward keeps each tile's probabilities ``P``; the backward walks the tiles again and accumulates the key
    and value gradients in place — ``dV += Pᵀ dO``, ``dS = P ∘ (dP − Σ P ∘ dP) · scale`` with ``dP = dO Vᵀ``,
    ``dQ = dS K``, ``dK += dSᵀ Q`` — where autograd over slices would zero-fill and add a full-size gradient per
    tile. The scale multiplies the small query tile, not the scores, and only each tile's last square of keys can
    be in a query's future, so the softmax makes four passes over the scores and the backward three. Grouped heads
    are stacked along the query axis as in ``_reference_attend``.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int) -> Tensor:
        batch, heads, q_len, d_head = q.shape
        kv_heads = k.shape[1]
        group = heads // kv_heads
        k, v = k.contiguous(), v.contiguous()  # every tile's key prefix is then a view
        out = q.new_empty(batch, kv_heads, group, q_len, v.shape[-1])
        grouped_q = q.view(batch, kv_heads, group, q_len, d_head)
        probs = []
        for start, stop, keys in _causal_tiles(q_len, q_offset):
            tile = stop - start
            q_tile = grouped_q[..., start:stop, :].reshape(batch, kv_heads, group * tile, d_head) * scale
            p = q_tile @ k[..., :keys, :].transpose(-2, -1)  # (b, kvh, g·tile, keys): scaled scores, then in place
            # only the last `tile` keys can lie in a query's future: mask that square, not the whole row
            p.view(batch, kv_heads, group, tile, keys)[..., keys - tile :].masked_fill_(
                _future(tile, q.device), -math.inf
            )
            p.sub_(p.amax(-1, keepdim=True)).exp_()
            p.div_(p.sum(-1, keepdim=True))  # softmax over the visible keys; hidden ones are exact zeros
            out[..., start:stop, :] = (p @ v[..., :keys, :]).view(batch, kv_heads, group, tile, -1)
            probs.append(p)
        ctx.save_for_backward(q, k, v, *probs)
        ctx.scale, ctx.q_offset = scale, q_offset
        return out.view(batch, heads, q_len, -1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        q, k, v, *probs = ctx.saved_tensors
        batch, heads, q_len, d_head = q.shape
        kv_heads = k.shape[1]
        group = heads // kv_heads
        grad_q = torch.empty_like(q).view(batch, kv_heads, group, q_len, d_head)
        grad_k, grad_v = torch.zeros_like(k), torch.zeros_like(v)
        grouped_q = q.view(batch, kv_heads, group, q_len, d_head)
        grouped_grad = grad.reshape(batch, kv_heads, group, q_len, -1)
        scale = ctx.scale
        for (start, stop, keys), p in zip(_causal_tiles(q_len, ctx.q_offset), probs, strict=True):
            tile = stop - start
            q_tile = grouped_q[..., start:stop, :].reshape(batch, kv_heads, group * tile, d_head)
            g_tile = grouped_grad[..., start:stop, :].reshape(batch, kv_heads, group * tile, -1)
            grad_v[..., :keys, :] += p.transpose(-2, -1) @ g_tile
            ds = (g_tile @ v[..., :keys, :].transpose(-2, -1)).mul_(p)  # P ∘ dP, then P ∘ (dP − Σ P ∘ dP)
            ds.addcmul_(p, ds.sum(-1, keepdim=True), value=-1)  # hidden keys: p = 0, so ds = 0 (scale comes below)
            grad_q[..., start:stop, :] = (ds @ k[..., :keys, :]).mul_(scale).view(batch, kv_heads, group, tile, -1)
            grad_k[..., :keys, :] += ds.transpose(-2, -1) @ (q_tile * scale)
        return grad_q.view(batch, heads, q_len, d_head), grad_k, grad_v, None, None


def _future(size: int, device) -> Tensor:
    """(size, size), True above the diagonal: the keys of a tile's last square that lie in a query's future."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu_(1)


def _causal_tiles(q_len: int, q_offset: int) -> list[tuple[int, int, int]]:
    """``(start, stop, keys)`` per query tile: queries ``start…stop−1`` see the first ``keys`` keys."""
    return [(s, min(s + CPU_CAUSAL_TILE, q_len), q_offset + min(s + CPU_CAUSAL_TILE, q_len))
            for s in range(0, q_len, CPU_CAUSAL_TILE)]  # fmt: skip


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
    score_bytes_per_row = math.prod(q.shape[1:-1]) * k.shape[-2] * 4  # (num_heads, q_len, k_len) in fp32
    return max(1, CPU_SCORES_BYTES_PER_SLICE // score_bytes_per_row)


def _torch_sdpa(q: Tensor, k: Tensor, v: Tensor, scale: float, q_offset: int, mask: Tensor | None) -> Tensor:
    """The fused PyTorch kernel (the one sanctioned use of torch.nn.functional, as a baseline)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    gqa = k.shape[1] != q.shape[1]
    q_len, k_len = q.shape[-2], k.shape[-2]
    if mask is None and q_offset == 0 and q_len == k_len:
        return sdpa(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    if mask is None and q_len == 1 and q_offset >= k_len - 1:  # one new token that sees every key
        return sdpa(q, k, v, scale=scale, enable_gqa=gqa)
    causal = F.causal_mask(q_len, k_len, q_offset, q.device)  # (q_len, k_len), True = may attend
    return sdpa(q, k, v, attn_mask=causal if mask is None else causal & mask, scale=scale, enable_gqa=gqa)
