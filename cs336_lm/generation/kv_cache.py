"""The KV-cache forward pass used for decoding, kept outside the model's training ``forward``.

``KVCache`` preallocates, for every layer, key and value buffers of shape (batch, num_heads, max_len,
d_head). ``cached_forward`` runs new tokens through the model's own submodules (``ln1``, the attention
projections, ``rope``, ``ln2``, ``ffn``, ``ln_final``, ``lm_head``), writes their keys and values into the
cache at columns ``length … length + new − 1`` and attends over every column so far; it returns logits
for the last column only, so the LM head costs one row per sequence. Prefill is one call with the whole
prompt, each decode step one call with one token; RoPE positions continue from the cache length.

Batched prompts of different lengths are left-padded: row ``b`` starts with ``pad[b]`` filler columns
that no real token attends to, and its positions are ``column − pad[b]``, so every row computes exactly
what it would compute alone.
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from cs336_lm.nn import functional as F


class KVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_len`` columns.

    ``length`` is the number of columns filled. ``pad`` (set by ``set_padding``) holds each row's number
    of left-padding columns; without it every column of every row is a real token.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int, max_len: int) -> None:
        attn = model.layers[0].attn
        weight = model.lm_head.weight
        shape = (batch_size, attn.num_heads, max_len, attn.d_head)
        self.keys = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.values = [torch.empty(shape, device=weight.device, dtype=weight.dtype) for _ in model.layers]
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0
        self.last_position = model.context_length - 1
        self.columns = torch.arange(max_len, device=weight.device)  # (max_len,)
        self.pad: Tensor | None = None
        self.positions = self.columns  # (max_len,) or (batch, max_len): the RoPE position of each column
        self.key_valid: Tensor | None = None  # (batch, max_len): False on padding columns

    def set_padding(self, pad: Int[Tensor, " batch"] | None) -> None:
        """Declare ``pad[b]`` leading filler columns in row ``b`` (None or all zeros: no padding)."""
        if pad is None or not bool(pad.any()):
            self.pad, self.positions, self.key_valid = None, self.columns, None
            return
        pad = pad.to(self.columns.device)
        self.pad = pad
        # Padding columns get position 0; columns past a short row's context (fed only after that row has
        # finished, their outputs unused) stay at the last position so RoPE's table is never overrun.
        self.positions = (self.columns[None, :] - pad[:, None]).clamp_(0, self.last_position)  # (batch, max_len)
        self.key_valid = self.columns[None, :] >= pad[:, None]  # (batch, max_len)

    def reset(self) -> None:
        """Forget every cached column (the buffers are reused)."""
        self.length = 0

    def step_positions(self, new: int) -> Tensor:
        """Positions of the next ``new`` columns, shaped for RoPE on (batch, heads, new, d_head)."""
        start = self.length
        if self.pad is None:
            return self.positions[start : start + new]  # (new,)
        return self.positions[:, None, start : start + new]  # (batch, 1, new)

    def attention_mask(self, new: int) -> Tensor | None:
        """(batch, 1, new, length+new) True where a new query may attend; None when only causality matters.

        Query ``i`` (column ``length + i``) sees keys up to its own column, minus padding columns; a padding
        query sees itself so that its (unused) output stays finite.
        """
        if self.key_valid is None:
            return None
        start, total = self.length, self.length + new
        causal = F.causal_mask(new, total, start, device=self.columns.device)  # (new, total)
        own = self.columns[None, :total] == (self.columns[start:total, None])  # (new, total): the query's column
        return causal & (self.key_valid[:, None, None, :total] | own)  # (batch, 1, new, total)


def _attention(
    attn: torch.nn.Module, x: Tensor, cache: KVCache, layer: int, positions: Tensor, mask: Tensor | None
) -> Tensor:
    """Self-attention of the new columns ``x`` over the cached columns plus themselves; fills the cache."""
    start, new = cache.length, x.shape[1]
    q = attn.split_heads(attn.q_proj(x))  # (batch, num_heads, new, d_head)
    k = attn.split_heads(attn.k_proj(x))
    v = attn.split_heads(attn.v_proj(x))
    if attn.rope is not None:
        q, k = attn.rope(q, positions), attn.rope(k, positions)
    cache.keys[layer][:, :, start : start + new] = k
    cache.values[layer][:, :, start : start + new] = v
    keys = cache.keys[layer][:, :, : start + new]  # (batch, num_heads, start+new, d_head)
    values = cache.values[layer][:, :, : start + new]
    if mask is None:
        out = attn.attend(q, keys, values, q_offset=start)  # the model's own causal attention
    else:
        out = F.scaled_dot_product_attention(q, keys, values, mask)
    return attn.output_proj(attn.merge_heads(out))  # (batch, new, d_model)


def cached_forward(
    model: torch.nn.Module, cache: KVCache, token_ids: Int[Tensor, "batch seq"]
) -> Float[Tensor, "batch vocab_size"]:
    """Run ``token_ids`` as the next columns of every cached sequence; return the logits of the last column.

    Equal (up to float rounding) to ``model(all_tokens)[:, -1]`` for a row without padding.
    """
    new = token_ids.shape[1]
    if cache.length + new > cache.max_len:
        raise ValueError(f"KV cache holds {cache.max_len} columns; {cache.length} used, {new} more requested")
    positions = cache.step_positions(new)
    mask = cache.attention_mask(new)
    x = model.token_embeddings(token_ids)  # (batch, new, d_model)
    for i, layer in enumerate(model.layers):
        x = x + _attention(layer.attn, layer.ln1(x), cache, i, positions, mask)
        x = x + layer.ffn(layer.ln2(x))
    cache.length += new
    return model.lm_head(model.ln_final(x[:, -1]))  # (batch, vocab_size)
