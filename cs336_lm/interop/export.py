"""``lm-export``: a run directory or checkpoint as a HuggingFace ``LlamaForCausalLM`` folder (``Qwen3ForCausalLM``
for a model with ``qk_norm``). A model no transformers architecture computes (``hf_llama.hf_problem``: post-norm or
no norm, NoPE, a non-gated FFN, soft-capped logits) is refused with one line naming the switch, before anything is
written.

The folder holds ``config.json`` (``hf_llama.llama_config``), ``model.safetensors`` (our weights under Llama's
names, q/k rows in half-split RoPE order; ``lm_head.weight`` left out when it equals the embedding — always with
``tie_embeddings`` — which ``config.json`` then declares as ``tie_word_embeddings``), ``generation_config.json``
(every special token ends a generation, as in ``lm-generate``) and the tokenizer files of ``hf_tokenizer``.
``AutoModelForCausalLM`` and ``AutoTokenizer.from_pretrained(DIR)`` load it offline. The folder is written into a
temporary sibling and renamed, so a failure leaves nothing behind; an existing non-empty ``--out`` is replaced only
with ``force``, and never when it is, contains or lies inside what the export reads (the run, its checkpoint, the
tokenizer).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cs336_lm.errors import InteropError
from cs336_lm.fileio import atomic_directory, check_apart
from cs336_lm.interop.hf_llama import hf_problem, llama_config, to_llama_state_dict
from cs336_lm.interop.hf_tokenizer import write_hf_tokenizer
from cs336_lm.run import load_run

CONFIG_JSON = "config.json"
GENERATION_CONFIG = "generation_config.json"
WEIGHTS = "model.safetensors"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_HF_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class ExportResult:
    """What ``export_run`` wrote, and from which checkpoint."""

    out: Path
    files: list[str]
    checkpoint: Path
    iteration: int
    parameters: int
    dtype: str
    tied: bool


def check_output_dir(out: Path, force: bool) -> None:
    """``out`` may be new or an empty directory; anything else needs ``force`` (then it is replaced whole)."""
    if out.exists() and not out.is_dir():
        raise InteropError(f"--out {out} is a file; give a directory to write")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InteropError(f"--out {out} already exists and is not empty; choose a new directory or pass --force")


def export_run(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    dtype: str = "fp32",
    tokenizer_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> ExportResult:
    """Write the HuggingFace folder of the run or checkpoint ``path`` to ``out`` (see the module docstring)."""
    if dtype not in DTYPES:
        raise InteropError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out)
    check_apart(out, path, tokenizer_dir)
    check_output_dir(out, force)
    loaded = load_run(path, "cpu", tokenizer_dir)
    check_apart(out, loaded.checkpoint, tokenizer_dir or loaded.run_dir.tokenizer_dir)  # a checkpoint's run, too
    model, tok = loaded.model, loaded.tokenizer
    problem = hf_problem(model.args)
    if problem is not None:
        raise InteropError(f"cannot export {loaded.checkpoint}: {problem}")
    state = to_llama_state_dict(model)
    tied = torch.equal(state["model.embed_tokens.weight"], state["lm_head.weight"])
    if tied:
        del state["lm_head.weight"]
    tensors = {name: w.detach().to(DTYPES[dtype]).contiguous() for name, w in state.items()}
    specials = list(tok.special_token_ids.values())
    first = specials[0] if specials else None
    config = llama_config(model, tied=tied, dtype=_HF_DTYPE_NAMES[dtype], bos=first, eos=first)
    generation = {"bos_token_id": first, "eos_token_id": specials if len(specials) > 1 else first}
    with atomic_directory(out) as tmp:
        _save_safetensors(tensors, tmp / WEIGHTS)
        _write_json(tmp / CONFIG_JSON, config)
        _write_json(tmp / GENERATION_CONFIG, generation)
        tokenizer_files = write_hf_tokenizer(tok, tmp, model.context_length)
    parameters = sum(w.numel() for w in tensors.values())
    files = [CONFIG_JSON, GENERATION_CONFIG, WEIGHTS, *tokenizer_files]
    return ExportResult(out, files, loaded.checkpoint, loaded.iteration, parameters, dtype, tied)


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise InteropError("lm-export needs the safetensors library: pip install 'cs336_lm[hf]'") from None
    save_file(tensors, str(path), metadata={"format": "pt"})  # transformers requires the "format" entry


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
