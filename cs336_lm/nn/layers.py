"""Leaf modules of the Transformer LM: ``Linear``, ``Embedding``, ``RMSNorm`` (and ``AddRMSNorm``, the residual
add fused into it), the feed-forward layers (``SwiGLU``, and the non-gated ``FeedForward``; ``make_ffn`` builds the
kind ``ModelArgs.ffn`` names) and the rotary position embedding. Each owns its parameters (or, for RoPE, a
cos/sin cache) under the names fixed in DESIGN.md, initialises them as DESIGN.md says, and calls
``nn.functional`` (the norms through the kernel dispatch, so the Triton kernels run on CUDA).

Decoding on a CPU multiplies few rows by every weight matrix, and there ``x @ W`` with ``W`` stored (in, out) is
up to twice as fast as ``x @ Wᵀ`` from the (out, in) layout of a ``Linear`` (measured in docs/bench/engine.md).
So in inference mode on a CPU the projections use ``fused_inference_weight``: a transposed copy of their
weights (several matrices side by side where one input feeds them all), kept beside the parameters, outside
the state dict, and rebuilt whenever a parameter changes. Training and every other device use the parameters.
"""

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336_lm.nn import dispatch
from cs336_lm.nn import functional as F


def fused_inference_weight(owner: nn.Module, weights: Sequence[Tensor]) -> Tensor:
    """``cat(weights).T`` as one contiguous (d_in, Σ d_out) tensor, so ``x @ result`` equals the Linears side by side.

    Kept on ``owner`` and rebuilt when any weight is replaced or updated in place (``.to``, ``load_state_dict``
    or an optimizer step change its storage or bump its version). For inference only: no gradient flows.
    """
    stamp = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
    cached = owner.__dict__.get("_inference_weight")
    if cached is None or cached[0] != stamp:
        with torch.no_grad():
            fused = torch.cat([w.detach() for w in weights]).T.contiguous()
        cached = owner.__dict__["_inference_weight"] = (stamp, fused)
    return cached[1]


def _decoding_on_cpu(x: Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_inference_mode_enabled()


class Linear(nn.Module):
    """``y = x Wᵀ`` without bias; ``weight`` is (out_features, in_features).

    Init: N(0, σ²) with σ² = 2 / (in_features + out_features), truncated at ±3σ.
    """

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = math.sqrt(2.0 / (self.in_features + self.out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        if _decoding_on_cpu(x):
            return x @ fused_inference_weight(self, (self.weight,))
        return x @ self.weight.T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """Row lookup ``weight[token_ids]``; ``weight`` is (num_embeddings, embedding_dim), init N(0, 1) cut at ±3."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x²) + eps) · weight`` over the last dim, fp32 inside; ``weight`` (gain) starts at 1."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None, *, kernels: str = "auto"):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.kernels = dispatch.check_backend(kernels)
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return dispatch.rms_norm(x, self.weight, self.eps, backend=self.kernels)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


class AddRMSNorm(RMSNorm):
    """A residual add followed by RMSNorm: ``h = x + residual``, returning ``(RMSNorm(h), h)``.

    The same parameter (``weight``) and math as ``RMSNorm`` applied to the sum; on CUDA one Triton kernel
    reads both inputs once and writes both outputs, where the unfused ops would read ``h`` twice more.
    """

    def forward(  # type: ignore[override]
        self, x: Float[Tensor, "... d_model"], residual: Float[Tensor, "... d_model"]
    ) -> tuple[Float[Tensor, "... d_model"], Float[Tensor, "... d_model"]]:
        return dispatch.add_rms_norm(x, residual, self.weight, self.eps, backend=self.kernels)


def _interleaved(cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """(max_seq_len, d/2) tables → ``cos'`` = c0 c0 c1 c1 …, ``sin'`` = −s0 s0 −s1 s1 … (max_seq_len, d)."""
    return torch.stack((cos, cos), dim=-1).flatten(-2), torch.stack((-sin, sin), dim=-1).flatten(-2)


class SwiGLU(nn.Module):
    """Position-wise feed-forward ``FFN(x) = W2(SiLU(W1 x) ⊙ W3 x)`` (Shazeer 2020).

    ``w1``, ``w3``: d_model → d_ff; ``w2``: d_ff → d_model.
    """

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        if _decoding_on_cpu(x):  # W1 and W3 read the same input: one matmul on their fused copy
            gate, up = (x @ fused_inference_weight(self, (self.w1.weight, self.w3.weight))).chunk(2, dim=-1)
            return self.w2(F.silu(gate) * up)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class FeedForward(nn.Module):
    """Non-gated position-wise feed-forward ``FFN(x) = W2 act(W1 x)`` (Vaswani et al. 2017), ``act`` SiLU or ReLU².

    ``w1``: d_model → d_ff; ``w2``: d_ff → d_model (SwiGLU's names, without ``w3``).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", device=None, dtype=None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.w2(_ACTIVATIONS[self.activation](self.w1(x)))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


_ACTIVATIONS = {"silu": F.silu, "relu2": F.relu_squared}
FFN_KINDS = ("swiglu", *_ACTIVATIONS)
"""``ModelArgs.ffn``: ``swiglu`` (gated, three matrices) or the activation of a non-gated ``FeedForward``."""


def make_ffn(kind: str, d_model: int, d_ff: int, device=None, dtype=None) -> SwiGLU | FeedForward:
    """The feed-forward layer ``kind`` (one of ``FFN_KINDS``) names."""
    if kind == "swiglu":
        return SwiGLU(d_model, d_ff, device=device, dtype=dtype)
    if kind not in _ACTIVATIONS:
        raise ValueError(f"ffn must be one of {', '.join(FFN_KINDS)}, got {kind!r}")
    return FeedForward(d_model, d_ff, kind, device=device, dtype=dtype)


class RotaryPositionalEmbedding(nn.Module):
    """Rotary position embedding on adjacent pairs: pair k at position p turns by ``p · θ^(−2k/d_k)``.

    Holds ``cos`` and ``sin`` tables of shape (max_seq_len, d_k/2) as non-persistent float32 buffers
    (not in the state_dict; rebuilt from θ), read as ``cos + i·sin`` by ``F.rope_complex`` (float32 on a CPU), and
    the same tables laid out for ``F.rope_rotate`` —
    ``cos2`` repeating each cosine twice, ``sin2`` interleaving ``(−sin, +sin)``, (max_seq_len, d_k) — so a
    forward only looks rows up. ``forward(x, token_positions)`` takes ``x`` of shape (..., seq, d_k) — e.g.
    (batch, num_heads, seq, d_head) — and positions that broadcast against ``x.shape[:-1]``: (seq,) or, with a
    head dim in x, (batch, 1, seq). It equals ``F.rope(x, token_positions, cos, sin)`` bit for bit.
    """

    cos: Tensor
    sin: Tensor
    cos2: Tensor
    sin2: Tensor

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None, dtype=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even d_k, got {d_k}")
        self.theta, self.d_k, self.max_seq_len = theta, d_k, max_seq_len
        cos, sin = self._tables(device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        cos2, sin2 = _interleaved(cos, sin)
        self.register_buffer("cos2", cos2, persistent=False)
        self.register_buffer("sin2", sin2, persistent=False)

    def _tables(self, device=None) -> tuple[Tensor, Tensor]:
        inv_freq = self.theta ** (-torch.arange(0, self.d_k, 2, device=device, dtype=torch.float64) / self.d_k)
        angles = torch.outer(torch.arange(self.max_seq_len, device=device, dtype=torch.float64), inv_freq)
        return angles.cos().float(), angles.sin().float()  # (max_seq_len, d_k/2) each

    def reset_parameters(self) -> None:
        cos, sin = self._tables(self.cos.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)
        cos2, sin2 = _interleaved(cos, sin)
        self.cos2.copy_(cos2)
        self.sin2.copy_(sin2)

    def forward(
        self, x: Float[Tensor, "... seq d_k"], token_positions: Int[Tensor, "... seq"]
    ) -> Float[Tensor, "... seq d_k"]:
        if F.rope_is_complex(x):
            return F.rope_complex(x, self._rotation(token_positions))
        return F.rope_rotate(x, *self._rows(token_positions, x.dtype))

    def rotate_both(self, q: Tensor, k: Tensor, token_positions: Tensor) -> tuple[Tensor, Tensor]:
        """``(self(q, positions), self(k, positions))``, the position tables looked up once for both."""
        if F.rope_is_complex(q):
            rotation = self._rotation(token_positions)
            return F.rope_complex(q, rotation), F.rope_complex(k, rotation)
        cos2, sin2 = self._rows(token_positions, q.dtype)
        return F.rope_rotate(q, cos2, sin2), F.rope_rotate(k, cos2, sin2)

    def _rotation(self, token_positions: Tensor) -> Tensor:
        return F.rope_rotation(token_positions, self.cos, self.sin)  # (..., seq, d_k/2)

    def _rows(self, token_positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        cos2, sin2 = self.cos2[token_positions], self.sin2[token_positions]  # (..., seq, d_k) each
        return (cos2, sin2) if cos2.dtype == dtype else (cos2.to(dtype), sin2.to(dtype))

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"
