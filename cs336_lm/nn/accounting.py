"""Parameter, FLOP and activation-memory accounting for ``TransformerLM`` shapes (a ``ModelArgs``), without
building a model.

Counts follow the architecture in ``transformer.py`` and each switch of ``ModelArgs`` (SwiGLU or a two-matrix FFN,
RMSNorm gains or none, QK-norm gains, a tied or untied head; no biases).
FLOPs count matrix multiplies only (2 per multiply-add); elementwise work (norms, softmax, RoPE) is left
out, as is usual for MFU. The trainer uses ``training_flops_per_token`` for model-FLOPs utilisation;
``lm-accounting`` (``cs336_lm.cli.accounting``) prints the tables for a preset or a config file.
"""

from cs336_lm.nn.args import ModelArgs

# Parameter counts of the released GPT-2 checkpoints (Radford et al. 2019; the HuggingFace models).
PUBLISHED_GPT2 = {
    "gpt2-small-like": 124_439_808,
    "gpt2-medium-like": 354_823_168,
    "gpt2-large-like": 774_030_080,
    "gpt2-xl-like": 1_557_611_200,
}


def param_counts(s: ModelArgs) -> dict[str, int]:
    """Parameters by part: per-layer attention 2·d² + 2·d·w (query and output, key and value of width
    w = num_kv_heads·d_head; 4·d² without grouping), plus 2·d_head with ``qk_norm`` (the query and key gains); FFN
    3·d·d_ff for SwiGLU, 2·d·d_ff for the non-gated kinds; RMSNorm gains 2·d per layer and d for the final norm (none
    with ``norm="none"``); embeddings and head V·d each. ``non_embedding`` leaves out only the token embeddings (a
    lookup, no FLOPs); an untied ``lm_head`` is a matmul and stays in. A tied head is the embedding matrix, counted
    once, as ``token_embeddings`` (``lm_head`` 0), so ``total`` is always the model's ``sum(p.numel())``."""
    gated = s.ffn == "swiglu"
    norms = 0 if s.norm == "none" else (2 * s.num_layers + 1) * s.d_model
    counts = {
        "token_embeddings": s.vocab_size * s.d_model,
        "attention": s.num_layers * (2 * s.d_model**2 + 2 * s.d_model * s.kv_width + 2 * s.d_head * s.qk_norm),
        "ffn": s.num_layers * (3 if gated else 2) * s.d_model * s.d_ff,
        "norms": norms,
        "lm_head": 0 if s.tie_embeddings else s.vocab_size * s.d_model,
    }
    counts["total"] = sum(counts.values())
    counts["non_embedding"] = counts["total"] - counts["token_embeddings"]
    return counts


def forward_flops(s: ModelArgs, seq_len: int | None = None) -> dict[str, int]:
    """Forward matmul FLOPs for one sequence of ``seq_len`` tokens (default: the context), by matmul.

    Per layer: QKV 2·T·d·(d + 2w) (w = num_kv_heads·d_head; 3·2·T·d² without grouping), scores Q·Kᵀ 2·T²·d,
    attention·V 2·T²·d, output 2·T·d², FFN 3·2·T·d·d_ff (2·2·T·d·d_ff when not gated); then the head 2·T·d·V
    (tied or not: it is a matmul either way). Scores and attention·V count the full T×T square, as the reference
    attention computes it (causal masking discards half of it). The switches that add no matmul (norms, QK-norm,
    RoPE, the soft cap) change nothing here.
    """
    t = s.context_length if seq_len is None else seq_len
    d, n = s.d_model, s.num_layers
    flops = {
        "qkv_proj": n * 2 * t * d * (d + 2 * s.kv_width),
        "attn_scores": n * 2 * t * t * d,
        "attn_values": n * 2 * t * t * d,
        "output_proj": n * 2 * t * d * d,
        "ffn": n * (3 if s.ffn == "swiglu" else 2) * 2 * t * d * s.d_ff,
        "lm_head": 2 * t * d * s.vocab_size,
    }
    flops["total"] = sum(flops.values())
    return flops


def training_flops_per_token(s: ModelArgs, seq_len: int | None = None) -> float:
    """Forward + backward ≈ 3 × forward (the backward does two matmuls for each forward one)."""
    t = s.context_length if seq_len is None else seq_len
    return 3 * forward_flops(s, t)["total"] / t


def activation_bytes(s: ModelArgs, batch_size: int, seq_len: int | None = None, bytes_per_element: int = 4) -> int:
    """Estimated bytes of activations autograd keeps for the backward of one training step (weights aside).

    Per layer and token, in elements (our reference implementation): the block input, the sum after the attention's
    residual add and the two RMSNorms' outputs (4·d; 2·d without norms); rotated q, k and v as batched-matmul
    operands (d + 2w, w = num_kv_heads·d_head); merged heads (d); in SwiGLU σ(W1 x), SiLU(W1 x), W3 x and the gated
    product (4·d_ff), in a non-gated FFN the activation's one saved tensor and its output (2·d_ff); with
    ``qk_norm`` the unnormalised queries and keys (d + w); attention probabilities (num_heads·T). Once per token: the
    final norm's input and output (2·d; d without it) and the logits (V; 2·V with the soft cap, whose tanh keeps its
    output). Per layer, once per batch: RoPE's cos/sin rows for q and k (4·T·d_head; none under ``nope``). Per-row
    statistics (1/rms, logsumexp) are left out. Checked against autograd's saved tensors in
    tests/nn/test_accounting.py.
    """
    t = s.context_length if seq_len is None else seq_len
    normed = s.norm != "none"
    stream = (4 if normed else 2) * s.d_model
    ffn = (4 if s.ffn == "swiglu" else 2) * s.d_ff
    qk = (s.d_model + s.kv_width) * s.qk_norm
    per_layer = stream + (s.d_model + 2 * s.kv_width) + s.d_model + ffn + qk + s.num_heads * t
    logits = s.vocab_size * (1 if s.logit_softcap is None else 2)
    per_token = s.num_layers * per_layer + (2 if normed else 1) * s.d_model + logits
    rope_tables = s.num_layers * 4 * t * s.d_head if s.position == "rope" else 0
    return (batch_size * t * per_token + rope_tables) * bytes_per_element


def kv_cache_bytes_per_token(s: ModelArgs, bytes_per_element: int = 4) -> int:
    """Bytes a decoder keeps per cached token: a key and a value of width num_kv_heads·d_head in every layer."""
    return 2 * s.num_layers * s.kv_width * bytes_per_element


def gpt2_params(s: ModelArgs) -> int:
    """Parameters of the original GPT-2 at this shape: tied embeddings, learned positions, biases,
    LayerNorm (gain + bias), a 2-matrix GELU MLP of width d_ff. ``gpt2_params`` of the GPT-2 small
    shape is 124,439,808, the published count."""
    d, f = s.d_model, s.d_ff
    per_layer = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    return s.vocab_size * d + s.context_length * d + s.num_layers * per_layer + 2 * d


def _fmt(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def report(name: str, s: ModelArgs, batch_size: int = 8, seq_len: int | None = None) -> str:
    """A printable table of ``s``'s parameters, forward FLOPs by matmul and the activation estimate; ``name``
    heads it (a ``gpt2-*-like`` preset name adds the check against GPT-2's published count)."""
    t = s.context_length if seq_len is None else seq_len
    params, flops = param_counts(s), forward_flops(s, t)
    lines = [f"== {name}: {s}", f"{'parameters':<22}{'count':>16}{'share':>8}"]
    lines += [f"  {k:<20}{v:>16,}{v / params['total']:>8.1%}" for k, v in params.items()]
    lines.append(f"{'forward FLOPs (T=' + str(t) + ')':<22}{'per sequence':>16}{'per token':>12}{'share':>8}")
    lines += [f"  {k:<20}{_fmt(v):>16}{_fmt(v / t):>12}{v / flops['total']:>8.1%}" for k, v in flops.items()]
    lines.append(f"  {'training (3x fwd)':<20}{_fmt(3 * flops['total']):>16}{_fmt(training_flops_per_token(s, t)):>12}")
    lines.append(f"  {'6N (non-embedding)':<20}{'':>16}{_fmt(6 * params['non_embedding']):>12}")
    act = activation_bytes(s, batch_size, t)
    lines.append(f"activations, batch {batch_size} x {t}, fp32: {act / 2**30:.2f} GiB (estimate)")
    kv = kv_cache_bytes_per_token(s)
    lines.append(f"KV cache, fp32: {kv / 2**10:.1f} KiB per token, {kv * t / 2**20:.2f} MiB per {t}-token sequence")
    if name in PUBLISHED_GPT2:
        shared = params["token_embeddings"] + params["attention"]
        lines.append(
            f"GPT-2 check: formula {gpt2_params(s):,} vs published {PUBLISHED_GPT2[name]:,}; "
            f"shared with ours (token embeddings + attention weights): {shared:,}"
        )
    return "\n".join(lines)
