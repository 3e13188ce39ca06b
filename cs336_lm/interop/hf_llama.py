"""Our ``TransformerLM`` as HuggingFace ``transformers``' ``LlamaForCausalLM`` (same architecture), both ways.

Names map one to one (``ln1`` → ``input_layernorm``, ``ffn.w1``/``w3``/``w2`` → ``mlp.gate_proj``/
``up_proj``/``down_proj``, …). The only change of values is in the query and key rows: we rotate
adjacent pairs ``(2k, 2k+1)`` while Llama's RoPE rotates ``(k, k + d_head/2)``, so within each head the
rows are reordered even-then-odd on the way out (``adjacent_to_half_split``) and back on the way in
(``half_split_to_adjacent``). Scores ``q·k`` are unchanged because both sides get the same order.

``HF_FIELDS`` is the one table of the model's fields (``ModelArgs``) as ``LlamaConfig`` fields, both ways;
``llama_config`` is the ``config.json`` of a model (the keys of transformers 4 and 5 both: ``rope_theta`` and
``rope_parameters``). ``to_llama`` builds the ``LlamaForCausalLM`` in memory (the parity tests and benchmarks);
``transformers`` is imported only there.
"""

from typing import Any

from torch import Tensor

from cs336_lm.nn import ModelArgs, TransformerLM

RMS_NORM_EPS = 1e-5  # our RMSNorm's eps (DESIGN.md); a Llama config with another cannot be represented

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
_TOP_NAMES = {
    "token_embeddings.weight": "model.embed_tokens.weight",
    "ln_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def adjacent_to_half_split(weight: Tensor, num_heads: int) -> Tensor:
    """Reorder each head's rows ``0 1 2 3 … → 0 2 4 … 1 3 5 …`` (adjacent-pair RoPE → half-split RoPE)."""
    width = weight.shape[0]
    d_head = width // num_heads
    rows = weight.reshape(num_heads, d_head // 2, 2, -1)  # (heads, pairs, 2, d_in)
    return rows.transpose(1, 2).reshape(width, -1)  # (heads · [evens, odds], d_in)


def half_split_to_adjacent(weight: Tensor, num_heads: int) -> Tensor:
    """The inverse of ``adjacent_to_half_split``: each head's rows ``0 2 4 … 1 3 5 … → 0 1 2 3 …``."""
    width = weight.shape[0]
    d_head = width // num_heads
    rows = weight.reshape(num_heads, 2, d_head // 2, -1)  # (heads, [evens, odds], pairs, d_in)
    return rows.transpose(1, 2).reshape(width, -1)  # (heads · pairs · 2, d_in)


def llama_names(num_layers: int) -> dict[str, str]:
    """Our state_dict key → the ``LlamaForCausalLM`` key, for every parameter of a model of ``num_layers``."""
    names = dict(_TOP_NAMES)
    for i in range(num_layers):
        names.update({f"layers.{i}.{ours}": f"model.layers.{i}.{theirs}" for ours, theirs in _LAYER_NAMES.items()})
    return names


def to_llama_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """Our state_dict under ``LlamaForCausalLM`` names, with q/k rows permuted per head."""
    ours = model.state_dict()
    out = {}
    for name, theirs in llama_names(model.num_layers).items():
        w = ours[name]
        if name.endswith("attn.q_proj.weight"):
            w = adjacent_to_half_split(w, model.args.num_heads)
        elif name.endswith("attn.k_proj.weight"):
            w = adjacent_to_half_split(w, model.num_kv_heads)
        out[theirs] = w
    return out


def from_llama_state_dict(
    hf: dict[str, Tensor], num_layers: int, num_heads: int, num_kv_heads: int
) -> dict[str, Tensor]:
    """A ``LlamaForCausalLM`` state dict (``lm_head.weight`` may be absent: tied embeddings) under our names, q/k rows
    put back in adjacent-pair order. Raises ``KeyError`` naming the first missing key."""
    ours = {}
    for name, theirs in llama_names(num_layers).items():
        if theirs == "lm_head.weight" and theirs not in hf:
            theirs = "model.embed_tokens.weight"  # tied: the output layer is the embedding table
        w = hf[theirs]
        if name.endswith("attn.q_proj.weight"):
            w = half_split_to_adjacent(w, num_heads)
        elif name.endswith("attn.k_proj.weight"):
            w = half_split_to_adjacent(w, num_kv_heads)
        ours[name] = w.contiguous()
    return ours


HF_FIELDS: dict[str, str | None] = {
    # each field of ``ModelArgs`` (one declaration of the model) → the ``LlamaConfig`` field it is, or None where HF
    # has no such field (the run-time settings: how our ops run, not what they compute)
    "vocab_size": "vocab_size",
    "context_length": "max_position_embeddings",
    "d_model": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "d_ff": "intermediate_size",
    "rope_theta": "rope_theta",
    "num_kv_heads": "num_key_value_heads",
    "attention": None,
    "kernels": None,
}
"""How export writes, and import reads, the model's fields; ``tests/interop/test_hf_fields.py`` fails for a
``ModelArgs`` field the table does not mention."""


def hf_values(args: ModelArgs) -> dict[str, Any]:
    """``args`` as ``LlamaConfig`` fields, through ``HF_FIELDS`` (``num_key_value_heads`` written out)."""
    values = {hf: getattr(args, ours) for ours, hf in HF_FIELDS.items() if hf is not None}
    values["num_key_value_heads"] = args.kv_heads
    values["rope_theta"] = float(args.rope_theta)
    return values


def llama_config(
    model: TransformerLM, *, tied: bool = False, dtype: str = "float32", bos: int | None = None, eos: int | None = None
) -> dict[str, Any]:
    """The ``config.json`` of ``model`` as a ``LlamaForCausalLM`` (``tied``: the output layer is the embedding)."""
    values = hf_values(model.args)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **values,
        "head_dim": model.d_head,
        "rms_norm_eps": model.ln_final.eps,
        "rope_scaling": None,  # rope_theta above for transformers 4, rope_parameters for 5
        "rope_parameters": {"rope_type": "default", "rope_theta": values["rope_theta"]},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": tied,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": None,
        "torch_dtype": dtype,  # transformers 4
        "dtype": dtype,  # transformers 5
    }


def to_llama(model: TransformerLM, attn_implementation: str = "sdpa", eps: float | None = None):
    """A ``LlamaForCausalLM`` computing the same function as ``model`` (same dtype and device)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    values = hf_values(model.args)
    theta = values.pop("rope_theta")
    config = LlamaConfig(
        **values,
        rms_norm_eps=model.ln_final.eps if eps is None else eps,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
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
