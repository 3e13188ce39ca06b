"""The pre-norm Transformer block and the decoder-only language model built from it.

``TransformerLM``: token embeddings → ``num_layers`` × ``TransformerBlock`` → ``ln_final`` → ``lm_head``,
with RoPE in every attention layer and no biases (a Llama-style architecture; see DESIGN.md for the exact
state_dict names). The ``attention`` and ``kernels`` settings are passed down to every submodule. One forward
serves training, prefill and decoding: given a ``kv_cache`` (``cs336_lm.nn.cache``) it attends over each
sequence's cached tokens and returns only the logits of the tokens that sample next.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336_lm.nn.attention import MultiHeadSelfAttention
from cs336_lm.nn.cache import KVCache, LayerKVCache
from cs336_lm.nn.layers import AddRMSNorm, Embedding, Linear, RMSNorm, SwiGLU


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + MHA(RMSNorm₁(x))``, then ``y = h + FFN(RMSNorm₂(h))``.

    ``ln2`` is an ``AddRMSNorm``: the first residual add and RMSNorm₂ run as one op (a Triton kernel on CUDA).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        max_seq_len: int,
        theta: float | None,
        device=None,
        dtype=None,
        *,
        num_kv_heads: int | None = None,
        attention: str = "reference",
        kernels: str = "auto",
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.ln1 = RMSNorm(d_model, **factory, kernels=kernels)
        self.attn = MultiHeadSelfAttention(
            d_model,
            num_heads,
            max_seq_len,
            theta,
            **factory,
            num_kv_heads=num_kv_heads,
            attention=attention,
            kernels=kernels,
        )
        self.ln2 = AddRMSNorm(d_model, **factory, kernels=kernels)
        self.ffn = SwiGLU(d_model, d_ff, **factory)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "batch seq d_model"]:
        attn_out = self.attn(self.ln1(x), token_positions, kv_cache)
        normed, h = self.ln2(attn_out, residual=x)  # h = x + MHA(RMSNorm₁(x)), normed = RMSNorm₂(h)
        return h + self.ffn(normed)


class TransformerLM(nn.Module):
    """Decoder-only LM: ``logits = lm_head(RMSNorm(blocks(embed(tokens))))`` of shape (batch, seq, vocab_size).

    Inputs may be any length up to ``context_length`` (also the RoPE cache size); ``token_positions``
    defaults to 0…seq−1 and may be given as (seq,) or (batch, seq) for offset decoding. Logits come
    back unnormalised, in the activations' dtype. ``num_kv_heads`` (default ``num_heads``) sets the key/value
    heads of grouped-query attention.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int,
        rope_theta: float = 10000.0,
        *,
        num_kv_heads: int | None = None,
        attention: str = "reference",
        kernels: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.vocab_size, self.context_length = vocab_size, context_length
        self.d_model, self.num_layers, self.num_heads, self.d_ff = d_model, num_layers, num_heads, d_ff
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        self.rope_theta, self.attention, self.kernels = rope_theta, attention, kernels
        factory = {"device": device, "dtype": dtype}
        self.token_embeddings = Embedding(vocab_size, d_model, **factory)
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model,
                num_heads,
                d_ff,
                context_length,
                rope_theta,
                **factory,
                num_kv_heads=self.num_kv_heads,
                attention=attention,
                kernels=kernels,
            )
            for _ in range(num_layers)
        )
        self.ln_final = RMSNorm(d_model, **factory, kernels=kernels)
        self.lm_head = Linear(d_model, vocab_size, **factory)

    def forward(
        self,
        token_ids: Int[Tensor, "batch seq"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        *,
        kv_cache: KVCache | None = None,
    ) -> Float[Tensor, "batch seq vocab_size"] | Float[Tensor, "sequences vocab_size"]:
        """Logits of every position (batch, seq, vocab_size); with ``kv_cache``, of each sequence's last new token
        (sequences, vocab_size), the new tokens' positions coming from the cache unless given."""
        if kv_cache is None:
            seq_len = token_ids.shape[-1]
            if seq_len > self.context_length:
                raise ValueError(
                    f"input of {seq_len} tokens is longer than the model's context_length {self.context_length}"
                )
            if token_positions is None:
                token_positions = torch.arange(seq_len, device=token_ids.device)
        elif token_positions is None:
            token_positions = kv_cache.positions
        x = self.token_embeddings(token_ids)  # (batch, seq, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, token_positions, None if kv_cache is None else kv_cache.layer(i))
        if kv_cache is not None:
            x = x.reshape(-1, self.d_model)[kv_cache.last_rows]  # (sequences, d_model): the tokens that sample next
        return self.lm_head(self.ln_final(x))

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.num_heads

    def config(self) -> dict:
        """The constructor keywords that rebuild this model (without device/dtype)."""
        return {
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "d_model": self.d_model,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "d_ff": self.d_ff,
            "rope_theta": self.rope_theta,
            "attention": self.attention,
            "kernels": self.kernels,
        }
