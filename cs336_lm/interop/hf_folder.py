"""The files of a HuggingFace Llama (or Qwen3) folder, read and checked before anything is built from them.

Every value is checked where it enters, so a malformed folder ends as one ``InteropError`` naming the file and the
field — never as an ``AttributeError`` from deep inside:

- ``read_json_object``: the file is UTF-8 JSON and holds an object (not a list, a string, …);
- ``llama_model_config``: ``config.json`` → our ``ModelArgs``, through ``hf_llama.HF_FIELDS`` — sizes are positive
  integers that divide as attention needs, flags are ``true``/``false``, numbers are finite; ``Qwen3ForCausalLM``
  is a Llama with ``qk_norm``; another architecture, RoPE scaling, a sliding window, biases, another activation,
  head size or RMSNorm eps is refused, naming the setting;
- ``weight_files``: ``model.safetensors``, or the shards of ``model.safetensors.index.json`` (plain file names in
  the folder, never a path out of it; never a pickle);
- ``read_safetensors`` / ``check_safetensors``: the files whole (a truncated or corrupt one is named), floating-point
  tensors;
- ``check_weights``: every tensor a ``LlamaForCausalLM`` of the config has, of the shape the config implies, no
  other and no bias — checked against the shapes of our model built on the ``meta`` device, before any memory is
  spent on it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from cs336_lm.errors import InteropError
from cs336_lm.interop.hf_llama import FLAGS, HF_FIELDS, RMS_NORM_EPS, llama_names
from cs336_lm.nn import ModelArgs, TransformerLM

CONFIG_JSON = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # a buffer some older checkpoints carry; recomputed, never learned
MISSING_SAFETENSORS = "reading HuggingFace weights needs the safetensors library: pip install 'cs336_lm[hf]'"
_LAYER = re.compile(r"model\.layers\.(\d+)\.")


# ---------------------------------------------------------------------------------------------- JSON


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``InteropError`` naming the file when it is not UTF-8 JSON or holds something
    else (``[]``, ``"text"``, ``3``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InteropError(f"{path} is not UTF-8 text") from None
    except RecursionError:
        raise InteropError(f"{path} is nested too deeply to read") from None
    except ValueError as e:  # JSONDecodeError, or an integer of more digits than Python converts
        raise InteropError(f"{path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InteropError(f"{path} must hold a JSON object, got {kind(data)}")
    return data


def kind(value: Any) -> str:
    """What a JSON value is, for a message: ``a list``, ``a string``, ``null``, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return next((name for t, name in names.items() if isinstance(value, t)), type(value).__name__)


def show(value: Any, limit: int = 80) -> str:
    """``value`` as it reads in a message, on one line: strings quoted Python-style, the rest as JSON, cut short."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_count(value: Any) -> bool:
    """A JSON integer > 0 (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# ---------------------------------------------------------------------------------------------- config.json


ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
"""The ``model_type`` values we read and their architecture (Qwen3: Llama with ``qk_norm``)."""


def llama_model_config(hf: dict[str, Any], path: Path) -> tuple[ModelArgs, bool]:
    """Our ``ModelArgs`` of a Llama (or Qwen3) ``config.json`` (and whether its embeddings are tied), read through
    ``HF_FIELDS``; ``InteropError`` naming the first field that is malformed or that we cannot represent. Absent
    (or null) fields take ``LlamaConfig``'s defaults."""
    model_type = hf.get("model_type")
    architectures = hf.get("architectures") or [ARCHITECTURES.get(str(model_type), "LlamaForCausalLM")]
    if model_type not in ARCHITECTURES or architectures != [ARCHITECTURES[model_type]]:
        raise InteropError(
            f"{path}: model_type={show(model_type)}, architectures={show(architectures)}; lm-import reads "
            "LlamaForCausalLM and Qwen3ForCausalLM models only"
        )
    _refuse_unrepresentable(hf, path)
    if model_type == "qwen3" and _flag(hf, "use_sliding_window", path):
        raise InteropError(f"{path}: use_sliding_window=true; cs336_lm's attention sees the whole context")
    values: dict[str, Any] = {"qk_norm": model_type == "qwen3"}
    for ours, key in HF_FIELDS.items():
        if key == "rope_theta":
            values[ours] = _rope_theta(hf, path)
        elif key in FLAGS:
            values[ours] = _flag(hf, key, path)
        elif key is not None:
            values[ours] = _count(hf, key, path, default=_HF_DEFAULTS.get(key))
    heads, d_model = values["num_heads"], values["d_model"]
    kv_heads = values["num_kv_heads"] = values["num_kv_heads"] or heads
    if d_model % heads or heads % kv_heads or (d_model // heads) % 2:
        raise InteropError(
            f"{path}: hidden_size={d_model}, num_attention_heads={heads}, num_key_value_heads={kv_heads} do not "
            "give an even head size shared by whole groups of heads"
        )
    head_dim = _count(hf, "head_dim", path, default=d_model // heads)
    if head_dim != d_model // heads:
        raise InteropError(f"{path}: head_dim={head_dim} differs from hidden_size / num_attention_heads")
    args = ModelArgs(**values)
    return args, args.tie_embeddings


_HF_DEFAULTS = {"max_position_embeddings": 2048, "num_key_value_heads": 0}  # LlamaConfig's; 0: num_attention_heads
MAX_SIZE = 2**31 - 1  # beyond any real model; keeps every product of two sizes within int64


def _count(hf: dict[str, Any], key: str, path: Path, default: int | None = None) -> int:
    """``hf[key]``, a positive integer; absent or null gives ``default`` (None: the field is required)."""
    value = hf.get(key)
    if value is None:
        if default is None:
            raise InteropError(f"{path} has no {key}")
        return default
    if not is_count(value) or value > MAX_SIZE:
        raise InteropError(f"{path}: {key} must be a positive integer below 2**31, got {show(value)}")
    return value


def _flag(hf: dict[str, Any], key: str, path: Path) -> bool:
    """``hf[key]``, ``true`` or ``false``; absent or null is false."""
    value = hf.get(key)
    if value is not None and not isinstance(value, bool):
        raise InteropError(f"{path}: {key} must be true or false, got {show(value)}")
    return bool(value)


def _number(value: Any, key: str, path: Path) -> float:
    """A finite JSON number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise InteropError(f"{path}: {key} must be a finite number > 0, got {show(value)}")
    return float(value)


def _refuse_unrepresentable(hf: dict[str, Any], path: Path) -> None:
    """Biases, another activation or another RMSNorm eps: one line naming the field."""
    for key in ("attention_bias", "mlp_bias"):
        if _flag(hf, key, path):
            raise InteropError(f"{path}: {key}=true; cs336_lm's layers have no biases")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise InteropError(f"{path}: hidden_act={show(act)}; cs336_lm's feed-forward layer is SwiGLU (silu)")
    eps = _number(hf.get("rms_norm_eps", 1e-6), "rms_norm_eps", path)
    if not math.isclose(eps, RMS_NORM_EPS, rel_tol=1e-9):
        raise InteropError(f"{path}: rms_norm_eps={show(eps)}; cs336_lm's RMSNorm uses eps={RMS_NORM_EPS}")


def _rope_theta(hf: dict[str, Any], path: Path) -> float:
    """θ of plain RoPE (``rope_parameters`` of transformers 5, or ``rope_theta`` + ``rope_scaling`` of 4); any other
    RoPE setting is refused, naming it."""
    params = hf.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise InteropError(f"{path}: rope_parameters must be a JSON object, got {show(params)}")
        kind_ = params.get("rope_type", params.get("type", "default"))
        if kind_ != "default":
            raise InteropError(f"{path}: rope_parameters.rope_type={show(kind_)}; RoPE scaling is not supported")
        if "rope_theta" in params:
            return _number(params["rope_theta"], "rope_parameters.rope_theta", path)
    scaling = hf.get("rope_scaling")
    if scaling is not None:
        kind_ = (scaling.get("rope_type") or scaling.get("type")) if isinstance(scaling, dict) else None
        if kind_ != "default":
            raise InteropError(
                f"{path}: rope_scaling={show(scaling)}; RoPE scaling is not supported (plain RoPE: rope_scaling null)"
            )
    return _number(hf.get("rope_theta", 10000.0), "rope_theta", path)


# ---------------------------------------------------------------------------------------------- weights


def weight_files(hf_dir: Path) -> list[Path]:
    """``model.safetensors``, or the shards ``model.safetensors.index.json`` lists (each a file name in ``hf_dir``)."""
    if (hf_dir / WEIGHTS).is_file():
        return [hf_dir / WEIGHTS]
    index_path = hf_dir / WEIGHTS_INDEX
    if not index_path.is_file():
        pickles = sorted(p.name for p in hf_dir.glob("pytorch_model*.bin"))
        hint = f" (it has {pickles[0]}, a pickle, which is never loaded)" if pickles else ""
        raise InteropError(f"{hf_dir} has no {WEIGHTS} or {WEIGHTS_INDEX}{hint}")
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise InteropError(f"{index_path}: weight_map must be an object of tensor: file name, got {show(weight_map)}")
    for tensor, name in weight_map.items():
        if not isinstance(name, str) or not _plain_name(name):
            raise InteropError(f"{index_path}: weight_map[{tensor!r}] = {show(name)} is not a file name in {hf_dir}")
    files = [hf_dir / name for name in dict.fromkeys(weight_map.values())]
    missing = next((f for f in files if not f.is_file()), None)
    if missing is not None:
        raise InteropError(f"{index_path} lists {missing.name}, which is missing from {hf_dir}")
    return files


def _plain_name(name: str) -> bool:
    """A file name with no directory part (``../x``, ``/etc/x``, ``a/b`` are not)."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise InteropError(MISSING_SAFETENSORS) from None
    return safetensors


def _unreadable(file: Path, e: Exception) -> InteropError:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return InteropError(f"{file} is not a readable safetensors file (truncated or corrupt?): {reason}")


def check_safetensors(hf_dir: Path) -> None:
    """Every weight file's header is whole and describes tensors its length covers (a cheap read: no tensor is
    loaded); ``InteropError`` naming the first bad file."""
    safetensors = _safetensors()
    for file in weight_files(hf_dir):
        try:
            with safetensors.safe_open(str(file), framework="pt") as f:
                list(f.keys())
        except Exception as e:  # the Rust reader's SafetensorError, an OSError, or a header it cannot parse
            raise _unreadable(file, e) from None


def read_safetensors(hf_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Every tensor of the folder's weight files (``weight_files``) and their dtype's name (e.g. ``bfloat16``)."""
    safetensors = _safetensors()
    weights: dict[str, torch.Tensor] = {}
    for file in weight_files(hf_dir):
        try:
            tensors = safetensors.torch.load_file(str(file))
        except Exception as e:  # the Rust reader's SafetensorError, an OSError, a dtype torch lacks
            raise _unreadable(file, e) from None
        twice = next((name for name in tensors if name in weights), None)
        if twice is not None:
            raise InteropError(f"{hf_dir}: tensor {twice} is stored twice (again in {file.name})")
        weights.update(tensors)
    dtypes = sorted({str(w.dtype).removeprefix("torch.") for w in weights.values()})
    return weights, "/".join(dtypes)


def check_weights(weights: dict[str, torch.Tensor], m: ModelArgs, tied: bool, hf_dir: Path) -> None:
    """The tensors are exactly those of a ``LlamaForCausalLM`` (``Qwen3ForCausalLM``) of ``m`` (``lm_head.weight`` may
    be left out when ``tied``), floating-point, of the shapes ``config.json`` implies; ``InteropError`` naming the
    first that is not."""
    biases = sorted(k for k in weights if k.endswith(".bias"))
    if biases:
        raise InteropError(f"{hf_dir} holds {biases[0]}: biases are not supported")
    other = next((k for k, w in weights.items() if not w.is_floating_point()), None)
    if other is not None:
        raise InteropError(
            f"{hf_dir}: {other} has dtype {str(weights[other].dtype).removeprefix('torch.')}; "
            "weights must be floating-point"
        )
    layers = {int(match.group(1)) for k in weights if (match := _LAYER.match(k))}
    if m.num_layers > len(layers):  # checked first: a huge count is refused before anything is built for it
        raise InteropError(
            f"{hf_dir / CONFIG_JSON}: num_hidden_layers={m.num_layers}, but the weights hold {len(layers)} layers"
        )
    if "lm_head.weight" not in weights and not tied:
        raise InteropError(f"{hf_dir} has no lm_head.weight and {CONFIG_JSON} does not set tie_word_embeddings")
    names = llama_names(m.num_layers, m.qk_norm)
    expected = {names[k]: tuple(t.shape) for k, t in TransformerLM.from_args(m, device="meta").state_dict().items()}
    if "lm_head.weight" not in weights:
        del expected["lm_head.weight"]  # tied: the embedding serves as the output layer
    for name, shape in expected.items():
        if name not in weights:
            raise InteropError(f"{hf_dir}: the weights have no {name}")
        if tuple(weights[name].shape) != shape:
            raise InteropError(
                f"{hf_dir}: {name} has shape {tuple(weights[name].shape)} but {CONFIG_JSON} implies {shape}"
            )
    unknown = sorted(k for k in weights if k not in expected and not k.endswith(IGNORED_SUFFIXES))
    if unknown:
        architecture = "Qwen3ForCausalLM" if m.qk_norm else "LlamaForCausalLM"
        raise InteropError(f"{hf_dir} holds {unknown[0]}, which a {architecture} of this config does not have")
