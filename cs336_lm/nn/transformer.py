"""The Transformer block and the decoder-only language model built from it.

``TransformerLM``: token embeddings → ``num_layers`` × ``TransformerBlock`` → ``ln_final`` → ``lm_head``,
with RoPE in every attention layer and no biases (a Llama-style architecture; see DESIGN.md for the exact
state_dict names). The ``attention`` and ``kernels`` settings are passed down to every submodule, and so are the
recipe switches of ``ModelArgs`` (``norm``, ``position``, ``ffn``, ``qk_norm``, ``tie_embeddings``,
``logit_softcap``), whose defaults give the Llama block. One forward serves training, prefill and decoding: given a
``kv_cache`` (``cs336_lm.nn.cache``) it attends over each sequence's cached tokens and returns only the logits of
the tokens that sample next.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336_lm.nn import functional as F
from cs336_lm.nn.args import NORMS, ModelArgs
from cs336_lm.nn.attention import MultiHeadSelfAttention
from cs336_lm.nn.cache import KVCache, LayerKVCache
from cs336_lm.nn.layers import AddRMSNorm, Embedding, Linear, RMSNorm, make_ffn


class TransformerBlock(nn.Module):
    """Pre-norm block (``norm="pre"``): ``h = x + MHA(RMSNorm₁(x))``, then ``y = h + FFN(RMSNorm₂(h))``.

    ``norm="post"`` (the original Transformer): ``h = RMSNorm₁(x + MHA(x))``, ``y = RMSNorm₂(h + FFN(h))``.
    ``norm="none"``: ``h = x + MHA(x)``, ``y = h + FFN(h)``, and the block has no ``ln1``/``ln2`` (both None).
    The norm after a residual add is an ``AddRMSNorm``: the add and the norm run as one op (a Triton kernel on CUDA).
    ``ffn`` picks the feed-forward layer (``layers.FFN_KINDS``), ``qk_norm`` is passed to the attention.
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
        norm: str = "pre",
        ffn: str = "swiglu",
        qk_norm: bool = False,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        factory = {"device": device, "dtype": dtype}
        self.ln1: RMSNorm | None = None
        if norm != "none":
            self.ln1 = (RMSNorm if norm == "pre" else AddRMSNorm)(d_model, **factory, kernels=kernels)
        self.attn = MultiHeadSelfAttention(
            d_model,
            num_heads,
            max_seq_len,
            theta,
            **factory,
            num_kv_heads=num_kv_heads,
            attention=attention,
            kernels=kernels,
            qk_norm=qk_norm,
        )
        self.ln2 = None if norm == "none" else AddRMSNorm(d_model, **factory, kernels=kernels)
        self.ffn = make_ffn(ffn, d_model, d_ff, **factory)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "batch seq d_model"]:
        if self.ln1 is None or self.ln2 is None:  # norm="none"
            h = x + self.attn(x, token_positions, kv_cache)
            return h + self.ffn(h)
        if self.norm == "post":
            h, _ = self.ln1(self.attn(x, token_positions, kv_cache), residual=x)  # h = RMSNorm₁(x + MHA(x))
            y, _ = self.ln2(self.ffn(h), residual=h)  # y = RMSNorm₂(h + FFN(h))
            return y
        attn_out = self.attn(self.ln1(x), token_positions, kv_cache)
        normed, h = self.ln2(attn_out, residual=x)  # h = x + MHA(RMSNorm₁(x)), normed = RMSNorm₂(h)
        return h + self.ffn(normed)


class TransformerLM(nn.Module):
    """Decoder-only LM: ``logits = lm_head(RMSNorm(blocks(embed(tokens))))`` of shape (batch, seq, vocab_size).

    Inputs may be any length up to ``context_length`` (also the RoPE cache size); ``token_positions``
    defaults to 0…seq−1 and may be given as (seq,) or (batch, seq) for offset decoding. Logits come
    back unnormalised, in the activations' dtype. ``num_kv_heads`` (default ``num_heads``) sets the key/value
    heads of grouped-query attention. The other keywords are the fields of ``ModelArgs``, where each is documented:
    ``norm="none"`` leaves ``ln_final`` out (None), ``position="nope"`` leaves RoPE out, ``tie_embeddings`` makes
    ``lm_head.weight`` the very parameter ``token_embeddings.weight`` is, and ``logit_softcap`` caps the logits.
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
        device=None,
        dtype=None,
        **fields,
    ):
        super().__init__()
        shape: dict[str, Any] = {"vocab_size": vocab_size, "context_length": context_length, "d_model": d_model}
        shape |= {"num_layers": num_layers, "num_heads": num_heads, "d_ff": d_ff, "rope_theta": rope_theta}
        unknown = sorted(set(fields) - set(ModelArgs.field_names()))
        if unknown:
            raise TypeError(f"TransformerLM got unexpected keyword arguments: {', '.join(unknown)}")
        args = self.args = ModelArgs(**shape, **fields)  # every other field (num_kv_heads, attention, …): ModelArgs
        factory = {"device": device, "dtype": dtype}
        self.token_embeddings = Embedding(args.vocab_size, args.d_model, **factory)
        self.layers = nn.ModuleList(
            TransformerBlock(
                args.d_model,
                args.num_heads,
                args.d_ff,
                args.context_length,
                args.rope_theta if args.position == "rope" else None,  # nope: no RoPE in the attention
                **factory,
                num_kv_heads=args.kv_heads,
                attention=args.attention,
                kernels=args.kernels,
                norm=args.norm,
                ffn=args.ffn,
                qk_norm=args.qk_norm,
            )
            for _ in range(args.num_layers)
        )
        self.ln_final = None if args.norm == "none" else RMSNorm(args.d_model, **factory, kernels=args.kernels)
        self.lm_head = Linear(args.d_model, args.vocab_size, **factory)
        if args.tie_embeddings:  # one matrix, with the head's init: N(0, 1) rows would give logits of std √d_model
            self.token_embeddings.weight = self.lm_head.weight

    @classmethod
    def from_args(cls, args: ModelArgs, *, device=None, dtype=None) -> TransformerLM:
        """The model ``args`` describes; ``TransformerLM.from_args(model.args)`` rebuilds ``model``'s shape."""
        return cls(**args, device=device, dtype=dtype)

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
            if seq_len > self.args.context_length:
                raise ValueError(
                    f"input of {seq_len} tokens is longer than the model's context_length {self.args.context_length}"
                )
            if token_positions is None:
                token_positions = torch.arange(seq_len, device=token_ids.device)
        elif token_positions is None:
            token_positions = kv_cache.positions
        x = self.token_embeddings(token_ids)  # (batch, seq, d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, token_positions, None if kv_cache is None else kv_cache.layer(i))
        if kv_cache is not None:
            x = x.reshape(-1, self.args.d_model)  # (new tokens, d_model) …
            if kv_cache.last_rows.numel() != x.shape[0]:  # … of which those that sample next (all, when decoding)
                x = x[kv_cache.last_rows]
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = self.lm_head(x)
        cap = self.args.logit_softcap
        return logits if cap is None else F.softcap(logits, cap)

    def config(self) -> dict:
        """The constructor keywords that rebuild this model (without device/dtype): ``model.args`` as a dict."""
        return self.args.to_dict()

    # The fields read most often, for the model's users (``model.args`` has them all)
    vocab_size = property(lambda self: self.args.vocab_size)
    context_length = property(lambda self: self.args.context_length)
    num_layers = property(lambda self: self.args.num_layers)
    num_kv_heads = property(lambda self: self.args.kv_heads)
    d_head = property(lambda self: self.args.d_head)
