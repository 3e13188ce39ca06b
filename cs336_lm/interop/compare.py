"""``lm-compare``: run our model and a HuggingFace model on the same ids and find the first stage that disagrees.

Forward hooks record each stage's output on both sides — the embeddings; each block's attention output (after the
output projection, before the residual add) and the block's output; the final norm; the logits — and the table
gives, per stage, the largest ``|ours − hf|`` and the largest ``|hf|``. A stage diverges when some element has
``|ours − hf| > atol + rtol · |hf|``; the first such stage is where to look (an attention output that diverges while
the block before it agreed points at that layer's q/k/v/o weights or RoPE). Both run in fp32 with HF's eager
attention. The ids come from our tokenizer; whether HF's tokenizer (when the folder has one) gives the same is
reported too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cs336_lm.errors import InteropError
from cs336_lm.interop.hf_folder import CONFIG_JSON, check_safetensors, read_json_object
from cs336_lm.interop.hf_llama import hf_problem, llama_names
from cs336_lm.run import load_run, select_device

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Stage:
    """One compared output: ``max |ours − hf|``, ``max |hf|`` and whether every element is within tolerance."""

    name: str
    max_diff: float
    max_ref: float
    ok: bool


@dataclass
class Comparison:
    ids: list[int]
    stages: list[Stage]
    atol: float
    rtol: float
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergence(self) -> Stage | None:
        return next((s for s in self.stages if not s.ok), None)


def compare(
    run: str | os.PathLike,
    hf_dir: str | os.PathLike,
    prompt: str,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    device: str = "cpu",
) -> Comparison:
    """Compare the run (or checkpoint) ``run`` with the HuggingFace folder ``hf_dir`` on ``prompt``."""
    for option, value in (("--atol", atol), ("--rtol", rtol)):
        if not (math.isfinite(value) and value >= 0):
            raise InteropError(f"{option} must be a finite number >= 0, got {value}")
    torch_device = select_device(device, option="--device")
    loaded = load_run(run, torch_device)
    problem = hf_problem(loaded.model.args)
    if problem is not None:  # no HF model has this run's stages to compare with
        raise InteropError(f"cannot compare {loaded.checkpoint}: {problem}")
    ids = loaded.tokenizer.encode(prompt)
    if not ids:
        raise InteropError("--prompt encodes to no tokens")
    if len(ids) > loaded.model.context_length:
        raise InteropError(f"--prompt has {len(ids)} tokens; the model's context is {loaded.model.context_length}")
    hf = load_hf_model(Path(hf_dir), torch_device)
    notes = [_tokenizer_note(Path(hf_dir), prompt, ids)]
    _check_same_shape(loaded.model, hf)
    tokens = torch.tensor([ids], device=torch_device)
    with torch.inference_mode():
        ours = _record(loaded.model, _our_stages(loaded.model), lambda: loaded.model(tokens))
        theirs = _record(hf, _hf_stages(hf), lambda: hf(input_ids=tokens, use_cache=False).logits)
    stages = [_stage(name, ours[name], theirs[name], atol, rtol) for name in ours]
    return Comparison(ids, stages, atol, rtol, [n for n in notes if n])


def load_hf_model(hf_dir: Path, device: torch.device) -> Any:
    """``AutoModelForCausalLM`` from a local folder, fp32, eager attention, eval mode. The folder is checked first
    (``config.json`` an object, every safetensors file whole, no pickle), and whatever else transformers cannot load
    in it is an ``InteropError`` too."""
    if not hf_dir.is_dir():
        raise InteropError(f"{hf_dir} is not a directory (give a HuggingFace model folder)")
    if not (hf_dir / CONFIG_JSON).is_file():
        raise InteropError(f"{hf_dir} has no {CONFIG_JSON}")
    read_json_object(hf_dir / CONFIG_JSON)
    check_safetensors(hf_dir)
    try:
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise InteropError("lm-compare needs transformers: pip install 'cs336_lm[hf]'") from None
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    progress = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # stderr keeps the notes and the error line only
    try:
        kwargs: dict[str, Any] = {dtype_key: torch.float32}
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(hf_dir), attn_implementation="eager", local_files_only=True, **kwargs
        )
    except Exception as e:  # a folder transformers cannot load (its config or weights disagree, say) is bad input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InteropError(f"transformers cannot load {hf_dir}: {first}") from None
    finally:
        if progress:
            transformers.utils.logging.enable_progress_bar()
    return model.to(device).eval()


def _tokenizer_note(hf_dir: Path, prompt: str, ids: list[int]) -> str:
    """Whether the folder's own tokenizer (if any) gives our ids for the prompt."""
    try:
        from transformers import AutoTokenizer

        theirs = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True).encode(prompt)
    except Exception:  # no tokenizer files, or ones transformers cannot read: the comparison goes on with ours
        return "the HF folder has no tokenizer transformers can load; the ids are ours"
    if list(theirs) == ids:
        return f"HF's tokenizer gives the same {len(ids)} ids"
    at = next((k for k, (a, b) in enumerate(zip(ids, theirs, strict=False)) if a != b), min(len(ids), len(theirs)))
    return f"HF's tokenizer gives other ids (first difference at position {at}); the comparison uses ours"


def _check_same_shape(ours: Any, hf: Any) -> None:
    """The HF model has our layers, heads and every weight's shape (else the comparison means nothing: bad input,
    not a divergence)."""
    inner = getattr(hf, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm")):
        raise InteropError(f"{type(hf).__name__} is not a Llama-style model (model.embed_tokens, model.layers, norm)")
    if len(inner.layers) != len(ours.layers):
        raise InteropError(f"the HF model has {len(inner.layers)} layers, the run {len(ours.layers)}")
    config = hf.config
    num_heads = getattr(config, "num_attention_heads", None)
    heads = (num_heads, getattr(config, "num_key_value_heads", None) or num_heads)  # None: plain attention
    if heads != (ours.args.num_heads, ours.num_kv_heads):
        raise InteropError(
            f"the HF model has {heads[0]} heads and {heads[1]} key/value heads, the run {ours.args.num_heads} and "
            f"{ours.num_kv_heads}"
        )
    theirs = {name: tuple(t.shape) for name, t in hf.state_dict().items()}
    for name, hf_name in llama_names(len(ours.layers), ours.args.qk_norm).items():
        shape = tuple(ours.get_parameter(name).shape)
        if theirs.get(hf_name) != shape:
            raise InteropError(f"the HF model's {hf_name} has shape {theirs.get(hf_name)}, the run's {name} {shape}")


def _our_stages(model: Any) -> dict[str, nn.Module]:
    return _stages(model.token_embeddings, model.layers, "attn", model.ln_final)


def _hf_stages(hf: Any) -> dict[str, nn.Module]:
    return _stages(hf.model.embed_tokens, hf.model.layers, "self_attn", hf.model.norm)


def _stages(embeddings: nn.Module, layers: Any, attention: str, final_norm: nn.Module) -> dict[str, nn.Module]:
    """The modules whose outputs are compared, by stage name: each layer's attention (its attribute ``attention``)
    and whole output between the embeddings and the final norm."""
    stages = {"embeddings": embeddings}
    for i, layer in enumerate(layers):
        stages[f"layer {i} attention"] = getattr(layer, attention)
        stages[f"layer {i} output"] = layer
    stages["final norm"] = final_norm
    return stages


def _record(model: nn.Module, stages: dict[str, nn.Module], run: Callable[[], Tensor]) -> dict[str, Tensor]:
    """Each stage's output (the first element of a tuple output), then ``"logits"``, from one call of ``run``."""
    found: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(module, args, output):
            found[name] = (output[0] if isinstance(output, tuple) else output).detach().float().clone()

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in stages.items()]
    try:
        logits = run()
    finally:
        for handle in handles:
            handle.remove()
    ordered = {name: found[name] for name in stages}
    ordered["logits"] = logits.detach().float()
    return ordered


def _stage(name: str, ours: Tensor, theirs: Tensor, atol: float, rtol: float) -> Stage:
    ours = ours.reshape(theirs.shape)  # (1, seq, …) on both sides
    diff = (ours - theirs).abs()
    ok = bool((diff <= atol + rtol * theirs.abs()).all())
    return Stage(name, float(diff.max()), float(theirs.abs().max()), ok)


def format_table(result: Comparison) -> str:
    """The per-stage table with the first divergence marked, and a closing verdict line."""
    first = result.first_divergence
    lines = [f"{'stage':<22} {'max |ours - hf|':>16} {'max |hf|':>10}"]
    for s in result.stages:
        mark = "  <- first divergence" if s is first else ("  beyond tolerance" if not s.ok else "")
        lines.append(f"{s.name:<22} {s.max_diff:>16.3e} {s.max_ref:>10.3e}{mark}")
    tolerance = f"atol {result.atol:g} + rtol {result.rtol:g} * |hf|"
    if first is None:
        lines.append(f"all {len(result.stages)} stages agree within {tolerance} on {len(result.ids)} tokens")
    else:
        lines.append(f"diverged: {first.name} is the first stage beyond {tolerance}")
    return "\n".join(result.notes + lines)
