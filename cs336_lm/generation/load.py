"""Loading a trained model for generation: a run directory or a checkpoint file → model, tokenizer, config.

A run directory (``train.out_dir``) gives its latest checkpoint (the ``checkpoints/latest`` pointer, else
the highest ``checkpoints/step_*.pt``) and its ``tokenizer/``; a checkpoint file gives itself and the
tokenizer of the run directory it sits in (``FILE.parent.parent / "tokenizer"``). The model is rebuilt
from the ``model`` section of the config stored in the checkpoint and its weights are loaded with
``torch.load(weights_only=True)`` (through ``cs336_lm.training.checkpoint``), so no user file is ever
unpickled. Every problem is a ``CheckpointError`` or ``GenerationError`` naming the path.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cs336_lm.errors import CheckpointError, GenerationError
from cs336_lm.nn import TransformerLM
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training.checkpoint import apply_checkpoint, latest_checkpoint, read_checkpoint

TOKENIZER_DIR = "tokenizer"


@dataclass
class LoadedModel:
    """A model ready to generate (eval mode, on its device), its tokenizer and where they came from."""

    model: TransformerLM
    tokenizer: Tokenizer
    checkpoint: Path
    iteration: int
    config: dict


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` must be usable."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise GenerationError(f"--device {spec!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenerationError(f"--device {spec} but CUDA is not available; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GenerationError(f"--device {spec} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GenerationError(f"--device {spec} but MPS is not available; use --device auto or cpu")
    return device


def find_checkpoint(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(checkpoint file, run directory)`` for a run directory or a checkpoint file inside ``RUN/checkpoints/``."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"{path} holds no checkpoint (expected checkpoints/latest or checkpoints/step_*.pt in a run directory)"
            )
        return found, path
    if path.is_file():
        return path, path.resolve().parent.parent
    raise CheckpointError(f"{path} does not exist: give a run directory or a checkpoint file")


def load_for_generation(path: str | os.PathLike, device: str | torch.device = "auto") -> LoadedModel:
    """Rebuild the model of a run directory or checkpoint file, load its weights and its tokenizer."""
    device = resolve_device(device) if isinstance(device, str) else device
    ckpt_path, run_dir = find_checkpoint(path)
    tokenizer_dir = run_dir / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(
            f"no tokenizer for {ckpt_path}: expected {tokenizer_dir} (a checkpoint is read from inside its run dir)"
        )
    ckpt = read_checkpoint(ckpt_path, map_location="cpu")
    config = ckpt.get("config") or {}
    model = _build_model(config.get("model"), ckpt_path, device)
    iteration = apply_checkpoint(ckpt, model, name=str(ckpt_path))
    tokenizer = Tokenizer.from_directory(tokenizer_dir)
    if tokenizer.vocab_size > model.vocab_size:
        raise CheckpointError(
            f"tokenizer {tokenizer_dir} has {tokenizer.vocab_size} tokens but the model in {ckpt_path} "
            f"only {model.vocab_size}: they are not from the same run"
        )
    return LoadedModel(model.eval(), tokenizer, ckpt_path, iteration, config)


def _build_model(model_config: dict | None, ckpt_path: Path, device: torch.device) -> TransformerLM:
    """``TransformerLM(**config["model"])`` without the ``preset`` name, on ``device``."""
    if not isinstance(model_config, dict):
        raise CheckpointError(f"{ckpt_path} stores no model config (config['model']); cannot rebuild the model")
    kwargs = {k: v for k, v in model_config.items() if k != "preset"}
    try:
        return TransformerLM(**kwargs, device=device)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_path}: its model config {kwargs} does not build a model ({e})") from None
