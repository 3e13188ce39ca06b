"""Export a ``TransformerLM`` to HuggingFace ``transformers``' ``LlamaForCausalLM`` (same architecture).

Names map one to one (``ln1`` → ``input_layernorm``, ``ffn.w1``/``w3``/``w2`` → ``mlp.gate_proj``/
``up_proj``/``down_proj``, …). The only change of values is in the query and key rows: we rotate
adjacent pairs ``(2k, 2k+1)`` while Llama's RoPE rotates ``(k, k + d_head/2)``, so within each head the
rows are reordered even-then-odd. Scores ``q·k`` are unchanged because both sides get the same order.
Used by the parity test and the model benchmark; ``transformers`` is imported only when called.
"""

from typing import Any

from torch import Tensor

from cs336_lm.nn import TransformerLM

_LAYER_NAMES = {
    "ln1.weight": "input_layernorm.weight",
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.output_proj.weight": "self_attn.o_proj.weight",
    "ln2.weight": "post_attention_layernorm.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
}


def adjacent_to_half_split(weight: Tensor, num_heads: int) -> Tensor:
    """Reorder each head's rows ``0 1 2 3 … → 0 2 4 … 1 3 5 …`` (adjacent-pair RoPE → half-split RoPE)."""
    width = weight.shape[0]
    d_head = width // num_heads
    rows = weight.reshape(num_heads, d_head // 2, 2, -1)  # (heads, pairs, 2, d_in)
    return rows.transpose(1, 2).reshape(width, -1)  # (heads · [evens, odds], d_in)


def to_llama_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """Our state_dict under ``LlamaForCausalLM`` names, with q/k rows permuted per head."""
    ours = model.state_dict()
    out = {
        "model.embed_tokens.weight": ours["token_embeddings.weight"],
        "model.norm.weight": ours["ln_final.weight"],
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(model.num_layers):
        for name, theirs in _LAYER_NAMES.items():
            w = ours[f"layers.{i}.{name}"]
            if name == "attn.q_proj.weight":
                w = adjacent_to_half_split(w, model.num_heads)
            elif name == "attn.k_proj.weight":
                w = adjacent_to_half_split(w, model.num_kv_heads)
            out[f"model.layers.{i}.{theirs}"] = w
    return out


def to_llama(model: TransformerLM, attn_implementation: str = "sdpa", eps: float | None = None):
    """A ``LlamaForCausalLM`` computing the same function as ``model`` (same dtype and device)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=model.vocab_size,
        hidden_size=model.d_model,
        intermediate_size=model.d_ff,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        num_key_value_heads=model.num_kv_heads,
        max_position_embeddings=model.context_length,
        rms_norm_eps=model.ln_final.eps if eps is None else eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(model.rope_theta)},
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
    )
    config._attn_implementation = attn_implementation
    weight = model.lm_head.weight
    hf: Any = LlamaForCausalLM(config)
    hf.to(device=weight.device, dtype=weight.dtype)
    hf.load_state_dict(to_llama_state_dict(model), strict=True)
    return hf.eval()
