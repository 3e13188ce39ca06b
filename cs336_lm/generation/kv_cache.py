"""The KV-cache forward pass used for decoding, kept outside the model's training ``forward``.

``KVCache`` preallocates, for every layer, key and value buffers of shape (batch, num_heads, max_len,
d_head). ``cached_forward`` runs new tokens through the model's layers — the same ``nn.functional`` math as
the modules (``rms_norm``, ``rope``, ``scaled_dot_product_attention``, ``silu``) on the modules' own
parameters — writes their keys and values into the cache at columns ``length … length + new − 1`` and
attends over every column so far; it returns logits for the last column only, so the LM head costs one row
per sequence. Prefill is one call with the whole prompt, each decode step one call with one token; RoPE
positions continue from the cache length.

At batch 1 a decode step multiplies one row by each weight matrix, so the fixed cost of every tensor op
counts as much as the arithmetic, and on CPU ``x @ W`` with ``W`` stored (d_in, d_out) is up to twice as
fast as ``x @ Wᵀ`` from the (d_out, d_in) ``Linear`` layout. ``DecodeWeights`` therefore keeps, per layer,
the query/key/value projections stacked into one (d_model, 3·d_model) matrix, ``w1``/``w3`` into one
(d_model, 2·d_ff) matrix, and every matrix transposed: one matmul instead of three and two, RoPE applied to
queries and keys in one call. These copies (about the size of the model) are made once per model and
rebuilt when its parameters change.

Batched prompts of different lengths are left-padded: row ``b`` starts with ``pad[b]`` filler columns
that no real token attends to, and its positions are ``column − pad[b]``, so every row computes exactly
what it would compute alone.
"""

import weakref

import torch
from jaxtyping import Float, Int
from torch import Tensor

from cs336_lm.nn import functional as F


class _LayerWeights:
    """One block's parameters arranged for decoding: fused projections, transposed to (d_in, d_out)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        attn, ffn = layer.attn, layer.ffn
        self.num_heads, self.d_head = attn.num_heads, attn.d_head
        self.ln1, self.eps1 = layer.ln1.weight.detach(), layer.ln1.eps
        self.ln2, self.eps2 = layer.ln2.weight.detach(), layer.ln2.eps
        self.qkv = _transposed(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)  # (d, 3·d)
        self.out = _transposed(attn.output_proj.weight)  # (d_model, d_model)
        self.w13 = _transposed(ffn.w1.weight, ffn.w3.weight)  # (d_model, 2·d_ff)
        self.w2 = _transposed(ffn.w2.weight)  # (d_ff, d_model)
        self.rope = attn.rope


def _transposed(*weights: Tensor) -> Tensor:
    """``cat(weights).T`` as a contiguous (d_in, sum of d_out) copy: ``x @ result`` = the Linears side by side."""
    return torch.cat([w.detach() for w in weights]).T.contiguous()


class DecodeWeights:
    """The model's parameters laid out for decoding; ``decode_weights(model)`` builds or reuses them."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.layers = [_LayerWeights(layer) for layer in model.layers]
        self.embeddings = model.token_embeddings.weight.detach()  # (vocab_size, d_model)
        self.ln_final, self.eps = model.ln_final.weight.detach(), model.ln_final.eps
        self.lm_head = _transposed(model.lm_head.weight)  # (d_model, vocab_size)
        self.stamp = _parameter_stamp(model)


def _parameter_stamp(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter is replaced or updated in place (an optimizer step bumps ``_version``)."""
    return tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in model.parameters())


_PREPARED: "weakref.WeakKeyDictionary[torch.nn.Module, DecodeWeights]" = weakref.WeakKeyDictionary()


def decode_weights(model: torch.nn.Module) -> DecodeWeights:
    """``DecodeWeights(model)``, kept per model and rebuilt only when its parameters have changed."""
    prepared = _PREPARED.get(model)
    if prepared is None or prepared.stamp != _parameter_stamp(model):
        with torch.no_grad():
            prepared = _PREPARED[model] = DecodeWeights(model)
    return prepared


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
        self.weights = decode_weights(model)
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
        """Positions of the next ``new`` columns, shaped for RoPE on (..., batch, heads, new, d_head)."""
        start = self.length
        if self.pad is None:
            return self.positions[start : start + new]  # (new,)
        return self.positions[:, None, start : start + new]  # (batch, 1, new)

    def attention_mask(self, new: int) -> Tensor | None:
        """True where a new query may attend: (new, length+new) causal, or (batch, 1, new, length+new) with
        padding; None for a single new query without padding (it sees every cached key).

        Query ``i`` (column ``length + i``) sees keys up to its own column, minus padding columns; a padding
        query sees itself so that its (unused) output stays finite.
        """
        start, total = self.length, self.length + new
        if self.key_valid is None:
            return None if new == 1 else F.causal_mask(new, total, start, device=self.columns.device)
        causal = F.causal_mask(new, total, start, device=self.columns.device)  # (new, total)
        own = self.columns[None, :total] == (self.columns[start:total, None])  # (new, total): the query's column
        return causal & (self.key_valid[:, None, None, :total] | own)  # (batch, 1, new, total)


def _attention(
    w: _LayerWeights, x: Tensor, cache: KVCache, layer: int, positions: Tensor, mask: Tensor | None
) -> Tensor:
    """Self-attention of the new columns ``x`` (batch·new, d_model) over the cache plus themselves; fills the cache."""
    batch, start = cache.batch_size, cache.length
    new = x.shape[0] // batch
    stop = start + new
    qkv = (
        (x @ w.qkv).view(batch, new, 3, w.num_heads, w.d_head).permute(2, 0, 3, 1, 4)
    )  # (3, batch, heads, new, d_head)
    qk = qkv[:2] if w.rope is None else w.rope(qkv[:2], positions)  # (2, batch, heads, new, d_head)
    cache.keys[layer][:, :, start:stop] = qk[1]
    cache.values[layer][:, :, start:stop] = qkv[2]
    keys = cache.keys[layer][:, :, :stop]  # (batch, heads, stop, d_head)
    values = cache.values[layer][:, :, :stop]
    out = F.scaled_dot_product_attention(qk[0], keys, values, mask)  # (batch, heads, new, d_head)
    return out.transpose(1, 2).reshape(batch * new, -1) @ w.out  # (batch·new, d_model)


def _feed_forward(w: _LayerWeights, x: Tensor) -> Tensor:
    """SwiGLU ``W2(SiLU(W1 x) ⊙ W3 x)`` with W1 and W3 applied as one matmul."""
    gate, up = (x @ w.w13).chunk(2, dim=-1)  # (batch·new, d_ff) each
    return (F.silu(gate) * up) @ w.w2


def cached_forward(
    model: torch.nn.Module, cache: KVCache, token_ids: Int[Tensor, "batch seq"]
) -> Float[Tensor, "batch vocab_size"]:
    """Run ``token_ids`` as the next columns of every cached sequence; return the logits of the last column.

    Equal (up to float rounding) to ``model(all_tokens)[:, -1]`` for a row without padding. Activations are
    kept 2-D, (batch·new, d_model), so every matmul is a plain ``mm``.
    """
    batch, new = token_ids.shape
    if cache.length + new > cache.max_len:
        raise ValueError(f"KV cache holds {cache.max_len} columns; {cache.length} used, {new} more requested")
    positions = cache.step_positions(new)
    mask = cache.attention_mask(new)
    weights = cache.weights
    x = weights.embeddings[token_ids.reshape(-1)]  # (batch·new, d_model)
    for i, w in enumerate(weights.layers):
        x = x + _attention(w, F.rms_norm(x, w.ln1, w.eps1), cache, i, positions, mask)
        x = x + _feed_forward(w, F.rms_norm(x, w.ln2, w.eps2))
    cache.length += new
    last = x.view(batch, new, -1)[:, -1]  # (batch, d_model)
    return F.rms_norm(last, weights.ln_final, weights.eps) @ weights.lm_head  # (batch, vocab_size)
