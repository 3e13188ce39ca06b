"""``lm-import``: a HuggingFace Llama-architecture folder (``LlamaForCausalLM``, or ``Qwen3ForCausalLM`` as a model
with ``qk_norm``) as a cs336_lm run directory.

Reads ``config.json``, the weights from ``model.safetensors`` or the shards of ``model.safetensors.index.json``
(never a pickle) — each checked by ``hf_folder``, which refuses, naming the file and field, what is malformed and
what we cannot represent — and the tokenizer (``hf_tokenizer.read_hf_tokenizer``). Query and key rows go back to
adjacent-pair RoPE order; tied embeddings stay tied (``model.tie_embeddings``: one matrix, as in the source, also
through fine-tuning); weights become fp32.
An ``out`` that is, contains or lies inside ``hf_dir`` is refused, ``force`` or not.

The run directory is a real one, written through ``RunDir`` into a temporary sibling and renamed: ``config.yaml``
(the model section; ``train.init_from`` points at the run, the data paths and ``train.out_dir`` are left unset
for a fine-tuning config to fill), ``tokenizer/`` and ``checkpoints/step_00000000.pt`` + ``latest`` (weights, no
optimizer state), so ``lm-generate``, ``lm-perplexity``, ``lm-export`` and ``lm-train train.init_from=RUN`` read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cs336_lm.config import Config, DataConfig, ModelConfig, TrainConfig
from cs336_lm.errors import InteropError
from cs336_lm.fileio import atomic_directory, check_apart
from cs336_lm.interop.export import check_output_dir
from cs336_lm.interop.hf_folder import (
    CONFIG_JSON,
    IGNORED_SUFFIXES,
    check_weights,
    llama_model_config,
    read_json_object,
    read_safetensors,
)
from cs336_lm.interop.hf_llama import from_llama_state_dict
from cs336_lm.interop.hf_tokenizer import read_hf_tokenizer
from cs336_lm.nn import ModelArgs, TransformerLM
from cs336_lm.run import RunDir


@dataclass(frozen=True)
class ImportResult:
    """What ``import_hf`` wrote."""

    out: Path
    checkpoint: Path
    model: ModelArgs
    tied: bool
    source_dtype: str
    parameters: int
    notes: list[str] = field(default_factory=list)


def import_hf(hf_dir: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> ImportResult:
    """Turn the HuggingFace folder ``hf_dir`` into the run directory ``out`` (see the module docstring)."""
    hf_dir, out = Path(hf_dir), Path(out)
    if not hf_dir.is_dir():
        raise InteropError(f"{hf_dir} is not a directory (give a HuggingFace model folder)")
    check_apart(out, hf_dir)
    check_output_dir(out, force)
    config_path = hf_dir / CONFIG_JSON
    if not config_path.is_file():
        raise InteropError(f"{hf_dir} has no {CONFIG_JSON}")
    args, tied = llama_model_config(read_json_object(config_path), config_path)
    tokenizer, notes = read_hf_tokenizer(hf_dir)
    if tokenizer.vocab_size > args.vocab_size:
        raise InteropError(
            f"the tokenizer has {tokenizer.vocab_size} ids but {config_path} vocab_size={args.vocab_size}: "
            "they do not belong together"
        )
    weights, source_dtype = read_safetensors(hf_dir)
    check_weights(weights, args, tied, hf_dir)
    model = TransformerLM.from_args(args, device="cpu")
    model.load_state_dict(_our_state_dict(weights, args))
    cfg = Config(
        model=ModelConfig(**args.to_dict()),
        data=DataConfig(tokenizer_dir=str(out.resolve() / "tokenizer")),
        train=TrainConfig(init_from=str(out.resolve())),
    )
    with atomic_directory(out) as tmp:
        run = RunDir(tmp)
        run.write_run_files(cfg, tokenizer)
        saved = run.save_checkpoint(model, None, 0, keep_last=None, config=cfg, imported_from=str(hf_dir.resolve()))
    parameters = sum(p.numel() for p in model.parameters())
    return ImportResult(out, out / saved.relative_to(tmp), args, tied, source_dtype, parameters, notes)


def _our_state_dict(weights: dict[str, torch.Tensor], m: ModelArgs) -> dict[str, torch.Tensor]:
    """The HF tensors (checked by ``check_weights``) under our names in fp32, q/k rows in adjacent-pair order."""
    hf = {k: w for k, w in weights.items() if not k.endswith(IGNORED_SUFFIXES)}
    state = from_llama_state_dict(hf, m.num_layers, m.num_heads, m.kv_heads, m.qk_norm)
    if m.tie_embeddings:  # HF ties too, whatever lm_head.weight a folder may also hold
        state["lm_head.weight"] = state["token_embeddings.weight"]
    return {k: w.to(torch.float32) for k, w in state.items()}
