"""``lm-import``: a HuggingFace Llama-architecture folder as a cs336_lm run directory.

Reads ``config.json`` (``llama_model_config``: refuses, naming the field, another architecture, RoPE scaling,
biases, another activation, a head size other than ``hidden_size / num_attention_heads`` or an RMSNorm eps other
than ours), the weights from ``model.safetensors`` or the shards of ``model.safetensors.index.json`` (never a
pickle), and the tokenizer (``hf_tokenizer.read_hf_tokenizer``). Query and key rows go back to adjacent-pair RoPE
order; tied embeddings become an ``lm_head`` equal to the embedding table; weights become fp32.

The run directory is a real one, written through ``RunDir`` into a temporary sibling and renamed: ``config.yaml``
(the model section; ``train.init_from`` points at the run, the data paths and ``train.out_dir`` are left unset
for a fine-tuning config to fill), ``tokenizer/`` and ``checkpoints/step_00000000.pt`` + ``latest`` (weights, no
optimizer state), so ``lm-generate``, ``lm-eval``, ``lm-export`` and ``lm-train train.init_from=RUN`` read it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cs336_lm.config import Config, DataConfig, ModelConfig, TrainConfig
from cs336_lm.errors import InteropError
from cs336_lm.fileio import atomic_directory
from cs336_lm.interop.export import CONFIG_JSON, WEIGHTS, check_output_dir
from cs336_lm.interop.hf_llama import RMS_NORM_EPS, from_llama_state_dict, llama_names
from cs336_lm.interop.hf_tokenizer import read_hf_tokenizer
from cs336_lm.run import RunDir, build_model

WEIGHTS_INDEX = "model.safetensors.index.json"
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # a buffer some older checkpoints carry; recomputed, never learned


@dataclass(frozen=True)
class ImportResult:
    """What ``import_hf`` wrote."""

    out: Path
    checkpoint: Path
    model: ModelConfig
    tied: bool
    source_dtype: str
    parameters: int
    notes: list[str] = field(default_factory=list)


def import_hf(hf_dir: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> ImportResult:
    """Turn the HuggingFace folder ``hf_dir`` into the run directory ``out`` (see the module docstring)."""
    hf_dir, out = Path(hf_dir), Path(out)
    if not hf_dir.is_dir():
        raise InteropError(f"{hf_dir} is not a directory (give a HuggingFace model folder)")
    check_output_dir(out, force)
    config_path = hf_dir / CONFIG_JSON
    if not config_path.is_file():
        raise InteropError(f"{hf_dir} has no {CONFIG_JSON}")
    model_cfg, tied = llama_model_config(_read_json(config_path), config_path)
    tokenizer, notes = read_hf_tokenizer(hf_dir)
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise InteropError(
            f"the tokenizer has {tokenizer.vocab_size} ids but {config_path} vocab_size={model_cfg.vocab_size}: "
            "they do not belong together"
        )
    weights, source_dtype = read_safetensors(hf_dir)
    if "lm_head.weight" not in weights and not tied:
        raise InteropError(f"{hf_dir} has no lm_head.weight and {config_path} does not set tie_word_embeddings")
    model = build_model(model_cfg, "cpu")
    state = _our_state_dict(weights, model_cfg, hf_dir)
    _check_shapes(model.state_dict(), state, model_cfg.num_layers, hf_dir)
    model.load_state_dict(state)
    cfg = Config(
        model=model_cfg,
        data=DataConfig(tokenizer_dir=str(out.resolve() / "tokenizer")),
        train=TrainConfig(init_from=str(out.resolve())),
    )
    with atomic_directory(out) as tmp:
        run = RunDir(tmp)
        run.write_run_files(cfg, tokenizer)
        saved = run.save_checkpoint(model, None, 0, keep_last=None, config=cfg, imported_from=str(hf_dir.resolve()))
    parameters = sum(p.numel() for p in model.parameters())
    return ImportResult(out, out / saved.relative_to(tmp), model_cfg, tied, source_dtype, parameters, notes)


# ---------------------------------------------------------------------------------------------- config.json


def llama_model_config(hf: dict[str, Any], path: Path) -> tuple[ModelConfig, bool]:
    """Our ``ModelConfig`` of a Llama ``config.json`` (and whether its embeddings are tied); ``InteropError`` naming
    the first field we cannot represent. Absent fields take ``LlamaConfig``'s defaults."""
    architectures = hf.get("architectures") or ["LlamaForCausalLM"]
    if hf.get("model_type") != "llama" or architectures != ["LlamaForCausalLM"]:
        raise InteropError(
            f"{path}: model_type={hf.get('model_type')!r}, architectures={architectures}; lm-import reads "
            "LlamaForCausalLM models only"
        )
    _refuse_unrepresentable(hf, path)
    try:
        sizes = {k: int(hf[k]) for k in _SIZE_FIELDS}
    except KeyError as e:
        raise InteropError(f"{path} has no {e.args[0]}") from None
    heads = sizes["num_attention_heads"]
    kv_heads = int(hf.get("num_key_value_heads") or heads)
    d_model = sizes["hidden_size"]
    if d_model % heads or heads % kv_heads or (d_model // heads) % 2:
        raise InteropError(
            f"{path}: hidden_size={d_model}, num_attention_heads={heads}, num_key_value_heads={kv_heads} do not "
            "give an even head size shared by whole groups of heads"
        )
    head_dim = hf.get("head_dim")
    if head_dim is not None and int(head_dim) != d_model // heads:
        raise InteropError(f"{path}: head_dim={head_dim} differs from hidden_size / num_attention_heads")
    model = ModelConfig(
        vocab_size=sizes["vocab_size"],
        context_length=int(hf.get("max_position_embeddings", 2048)),
        d_model=d_model,
        num_layers=sizes["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        d_ff=sizes["intermediate_size"],
        rope_theta=_rope_theta(hf, path),
    )
    return model, bool(hf.get("tie_word_embeddings", False))


_SIZE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def _refuse_unrepresentable(hf: dict[str, Any], path: Path) -> None:
    """Biases, another activation or another RMSNorm eps: one line naming the field."""
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise InteropError(f"{path}: {key}=true; cs336_lm's layers have no biases")
    if hf.get("hidden_act", "silu") != "silu":
        raise InteropError(f"{path}: hidden_act={hf['hidden_act']!r}; cs336_lm's feed-forward layer is SwiGLU (silu)")
    eps = hf.get("rms_norm_eps", 1e-6)
    if not math.isclose(float(eps), RMS_NORM_EPS, rel_tol=1e-9):
        raise InteropError(f"{path}: rms_norm_eps={eps}; cs336_lm's RMSNorm uses eps={RMS_NORM_EPS}")


def _rope_theta(hf: dict[str, Any], path: Path) -> float:
    """θ of plain RoPE (``rope_parameters`` of transformers 5, or ``rope_theta`` + ``rope_scaling`` of 4)."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        if params.get("rope_type", "default") != "default":
            kind = params["rope_type"]
            raise InteropError(f"{path}: rope_parameters.rope_type={kind!r}; RoPE scaling is not supported")
        return float(params["rope_theta"])
    scaling = hf.get("rope_scaling")
    if scaling is not None and (scaling.get("rope_type") or scaling.get("type")) != "default":
        raise InteropError(f"{path}: rope_scaling={json.dumps(scaling)}; RoPE scaling is not supported")
    return float(hf.get("rope_theta", 10000.0))


# ---------------------------------------------------------------------------------------------- weights


def read_safetensors(hf_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Every tensor of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``, and their
    dtype's name (e.g. ``bfloat16``)."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise InteropError("lm-import needs the safetensors library: pip install 'cs336_lm[hf]'") from None
    if (hf_dir / WEIGHTS).is_file():
        files = [hf_dir / WEIGHTS]
    elif (hf_dir / WEIGHTS_INDEX).is_file():
        index = _read_json(hf_dir / WEIGHTS_INDEX)
        files = [hf_dir / name for name in dict.fromkeys((index.get("weight_map") or {}).values())]
    else:
        pickles = sorted(p.name for p in hf_dir.glob("pytorch_model*.bin"))
        hint = f" (it has {pickles[0]}, a pickle, which lm-import never loads)" if pickles else ""
        raise InteropError(f"{hf_dir} has no {WEIGHTS} or {WEIGHTS_INDEX}{hint}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        if not file.is_file():
            raise InteropError(f"{WEIGHTS_INDEX} lists {file.name}, which is missing from {hf_dir}")
        try:
            weights.update(load_file(str(file)))
        except (SafetensorError, OSError) as e:
            raise InteropError(f"{file} is not a readable safetensors file ({e})") from None
    dtypes = sorted({str(w.dtype).removeprefix("torch.") for w in weights.values()})
    return weights, "/".join(dtypes)


def _our_state_dict(weights: dict[str, torch.Tensor], m: ModelConfig, hf_dir: Path) -> dict[str, torch.Tensor]:
    """The HF tensors under our names in fp32; biases and unknown tensors are refused, naming the first."""
    biases = sorted(k for k in weights if k.endswith(".bias"))
    if biases:
        raise InteropError(f"{hf_dir} holds {biases[0]}: biases are not supported")
    hf = {k: w for k, w in weights.items() if not k.endswith(_IGNORED_SUFFIXES)}
    try:
        state = from_llama_state_dict(hf, m.num_layers, m.num_heads, m.args.kv_heads)
    except KeyError as e:
        raise InteropError(f"{hf_dir}: the weights have no {e.args[0]}") from None
    except RuntimeError as e:  # a q/k matrix whose rows do not split into the configured heads
        raise InteropError(f"{hf_dir}: a query/key weight does not fit the configured heads ({e})") from None
    used = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"}
    used |= {f"model.layers.{i}.{name}" for i in range(m.num_layers) for name in _LAYER_PARTS}
    unknown = sorted(set(hf) - used)
    if unknown:
        raise InteropError(f"{hf_dir} holds {unknown[0]}, which a LlamaForCausalLM of this config does not have")
    return {k: w.to(torch.float32) for k, w in state.items()}


_LAYER_PARTS = [
    f"{block}.{name}.weight"
    for block, names in (
        ("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
        ("mlp", ("gate_proj", "up_proj", "down_proj")),
    )
    for name in names
] + ["input_layernorm.weight", "post_attention_layernorm.weight"]


def _check_shapes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], layers: int, hf_dir: Path) -> None:
    """Every tensor has the shape config.json implies; the message names the HF tensor."""
    names = llama_names(layers)
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise InteropError(
                f"{hf_dir}: {names[key]} has shape {tuple(found[key].shape)} but config.json implies "
                f"{tuple(tensor.shape)}"
            )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InteropError(f"{path} is not valid JSON ({e})") from None
