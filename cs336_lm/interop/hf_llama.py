"""Our ``TransformerLM`` as HuggingFace ``transformers``' ``LlamaForCausalLM`` (same architecture), both ways,
and with ``qk_norm`` as ``Qwen3ForCausalLM`` (Llama's block with an RMSNorm over each head's queries and keys).

Names map one to one (``ln1`` → ``input_layernorm``, ``ffn.w1``/``w3``/``w2`` → ``mlp.gate_proj``/
``up_proj``/``down_proj``, ``attn.q_norm`` → ``self_attn.q_norm``, …). The only change of values is in the query
and key rows: we rotate adjacent pairs ``(2k, 2k+1)`` while Llama's RoPE rotates ``(k, k + d_head/2)``, so within
each head the rows are reordered even-then-odd on the way out (``adjacent_to_half_split``) and back on the way in
(``half_split_to_adjacent``). Scores ``q·k`` are unchanged because both sides get the same order; the QK-norm gains
(one entry per feature of a head) are reordered the same way.

``HF_FIELDS`` is the one table of the model's fields (``ModelArgs``) as ``LlamaConfig`` fields, both ways;
``hf_problem`` names the switch of a model no transformers architecture computes (post-norm, no norm, NoPE, a
non-gated FFN, soft-capped logits); ``hf_architecture`` is Llama or Qwen3. ``llama_config`` is the ``config.json``
of a model (the keys of transformers 4 and 5 both: ``rope_theta`` and ``rope_parameters``). ``to_hf`` builds the HF
model in memory (the parity tests and benchmarks); ``transformers`` is imported only there.
"""

import dataclasses
from typing import Any

from torch import Tensor

from cs336_lm.nn import ModelArgs, TransformerLM
from cs336_lm.nn.args import RUN_TIME_FIELDS

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
_QK_NORM_NAMES = {"attn.q_norm.weight": "self_attn.q_norm.weight", "attn.k_norm.weight": "self_attn.k_norm.weight"}
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


def llama_names(num_layers: int, qk_norm: bool = False) -> dict[str, str]:
    """Our state_dict key → the ``LlamaForCausalLM`` key (``Qwen3ForCausalLM`` with ``qk_norm``), for every parameter
    of a model of ``num_layers``."""
    layer_names = _LAYER_NAMES | (_QK_NORM_NAMES if qk_norm else {})
    names = dict(_TOP_NAMES)
    for i in range(num_layers):
        names.update({f"layers.{i}.{ours}": f"model.layers.{i}.{theirs}" for ours, theirs in layer_names.items()})
    return names


def _gain_to_half_split(gain: Tensor) -> Tensor:
    """A QK-norm gain (d_head,) in half-split order, as its head's rows are."""
    return adjacent_to_half_split(gain.unsqueeze(-1), 1).squeeze(-1)


def _gain_to_adjacent(gain: Tensor) -> Tensor:
    return half_split_to_adjacent(gain.unsqueeze(-1), 1).squeeze(-1)


def to_llama_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """Our state_dict under ``LlamaForCausalLM`` (or ``Qwen3ForCausalLM``) names, with q/k rows permuted per head."""
    ours = model.state_dict()
    out = {}
    for name, theirs in llama_names(model.num_layers, model.args.qk_norm).items():
        w = ours[name]
        if name.endswith("attn.q_proj.weight"):
            w = adjacent_to_half_split(w, model.args.num_heads)
        elif name.endswith("attn.k_proj.weight"):
            w = adjacent_to_half_split(w, model.num_kv_heads)
        elif name.endswith(("attn.q_norm.weight", "attn.k_norm.weight")):
            w = _gain_to_half_split(w)
        out[theirs] = w
    return out


def from_llama_state_dict(
    hf: dict[str, Tensor], num_layers: int, num_heads: int, num_kv_heads: int, qk_norm: bool = False
) -> dict[str, Tensor]:
    """A ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with ``qk_norm``) state dict (``lm_head.weight`` may be absent:
    tied embeddings) under our names, q/k rows put back in adjacent-pair order. Raises ``KeyError`` naming the first
    missing key."""
    ours = {}
    for name, theirs in llama_names(num_layers, qk_norm).items():
        if theirs == "lm_head.weight" and theirs not in hf:
            theirs = "model.embed_tokens.weight"  # tied: the output layer is the embedding table
        w = hf[theirs]
        if name.endswith("attn.q_proj.weight"):
            w = half_split_to_adjacent(w, num_heads)
        elif name.endswith("attn.k_proj.weight"):
            w = half_split_to_adjacent(w, num_kv_heads)
        elif name.endswith(("attn.q_norm.weight", "attn.k_norm.weight")):
            w = _gain_to_adjacent(w)
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
    "tie_embeddings": "tie_word_embeddings",
    "qk_norm": None,  # no field: the architecture, Qwen3ForCausalLM (hf_architecture)
    # the switches HF's Llama and Qwen3 have only the default of: another value is refused (hf_problem)
    "norm": None,
    "position": None,
    "ffn": None,
    "logit_softcap": None,
}
"""How export writes, and import reads, the model's fields; ``tests/interop/test_hf_fields.py`` fails for a
``ModelArgs`` field the table does not mention. A field mapped to None that is neither a run-time setting nor
``qk_norm`` must keep its default for a model to leave for HF."""

_ONLY_DEFAULT_WHY = {
    "norm": "they are pre-norm",
    "position": "they use RoPE",
    "ffn": "their MLP is SwiGLU",
    "logit_softcap": "they do not cap the logits",
}
FLAGS = ("tie_word_embeddings",)
"""The ``HF_FIELDS`` values that are true/false flags (the others are numbers)."""


def hf_problem(args: ModelArgs) -> str | None:
    """Why no transformers architecture computes the model ``args`` describes (naming the switch and its value), or
    None when ``LlamaForCausalLM`` or ``Qwen3ForCausalLM`` does."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelArgs)}
    for field, hf in HF_FIELDS.items():
        if hf is not None or field in RUN_TIME_FIELDS or field == "qk_norm":
            continue
        value = getattr(args, field)
        if value != defaults[field]:
            why = _ONLY_DEFAULT_WHY.get(field, "they have no such setting")
            return (
                f"model.{field}={_show(value)} has no HuggingFace architecture (LlamaForCausalLM and "
                f"Qwen3ForCausalLM: {why}); only {field}={_show(defaults[field])} can be exported"
            )
    return None


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def hf_architecture(args: ModelArgs) -> tuple[str, str]:
    """``(architecture, model_type)`` of the HF class that computes ``args``' model: Qwen3's with ``qk_norm``, else
    Llama's (``hf_problem`` says whether one does at all)."""
    return ("Qwen3ForCausalLM", "qwen3") if args.qk_norm else ("LlamaForCausalLM", "llama")


def hf_values(args: ModelArgs) -> dict[str, Any]:
    """``args`` as ``LlamaConfig`` (or ``Qwen3Config``) fields, through ``HF_FIELDS`` (``num_key_value_heads``
    written out)."""
    values = {hf: getattr(args, ours) for ours, hf in HF_FIELDS.items() if hf is not None}
    values["num_key_value_heads"] = args.kv_heads
    values["rope_theta"] = float(args.rope_theta)
    return values


def llama_config(
    model: TransformerLM, *, tied: bool = False, dtype: str = "float32", bos: int | None = None, eos: int | None = None
) -> dict[str, Any]:
    """The ``config.json`` of ``model`` as a ``LlamaForCausalLM``, or with ``qk_norm`` a ``Qwen3ForCausalLM``
    (``tied``: the output layer is the embedding; always so with ``tie_embeddings``)."""
    values = hf_values(model.args)
    architecture, model_type = hf_architecture(model.args)
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        **values,
        "head_dim": model.d_head,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_scaling": None,  # rope_theta above for transformers 4, rope_parameters for 5
        "rope_parameters": {"rope_type": "default", "rope_theta": values["rope_theta"]},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "tie_word_embeddings": tied or model.args.tie_embeddings,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": None,
        "torch_dtype": dtype,  # transformers 4
        "dtype": dtype,  # transformers 5
    }
    if model_type == "qwen3":  # Qwen3Config has no mlp_bias or pretraining_tp; its sliding window stays off
        del config["mlp_bias"], config["pretraining_tp"]
        config |= {"use_sliding_window": False, "sliding_window": None, "max_window_layers": model.num_layers}
    return config


def to_hf(model: TransformerLM, attn_implementation: str = "sdpa", eps: float | None = None):
    """A ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with ``qk_norm``) computing the same function as ``model`` (same
    dtype and device); ``ValueError`` (``hf_problem``) for a model no HF architecture computes."""
    problem = hf_problem(model.args)
    if problem is not None:
        raise ValueError(problem)
    import transformers

    values = hf_values(model.args)
    theta = values.pop("rope_theta")
    architecture, _ = hf_architecture(model.args)
    config_class = transformers.Qwen3Config if model.args.qk_norm else transformers.LlamaConfig
    extra: dict[str, Any] = {} if model.args.qk_norm else {"mlp_bias": False}
    config = config_class(
        **values,
        rms_norm_eps=RMS_NORM_EPS if eps is None else eps,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        attention_bias=False,
        hidden_act="silu",
        head_dim=model.d_head,
        **extra,
    )
    config._attn_implementation = attn_implementation
    weight = model.lm_head.weight
    hf: Any = getattr(transformers, architecture)(config)
    hf.to(device=weight.device, dtype=weight.dtype)
    hf.load_state_dict(to_llama_state_dict(model), strict=True)
    return hf.eval()


to_llama = to_hf
"""``to_hf`` by its first name (the parity tests and benchmarks of the Llama model call it so)."""
