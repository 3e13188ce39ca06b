"""The model a run describes: built from a config's ``model`` section, or loaded whole from a run directory.

``build_model(model_cfg, device)`` is the one place a ``TransformerLM`` is made from a config (training builds
its fresh model with it, loading rebuilds a trained one). ``load_run(path)`` takes a run directory (its latest
checkpoint) or a checkpoint file, rebuilds the model from the config stored in the checkpoint, loads the weights
with ``torch.load(weights_only=True)`` (no user file is ever unpickled) and the run's tokenizer, and returns them
ready to generate or evaluate. Every problem is a one-line ``CheckpointError`` naming the path; a damaged
checkpoint (its digest does not match) is refused, naming the run's next older checkpoint to try instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cs336_lm.config import ModelConfig, model_from_dict
from cs336_lm.errors import CheckpointError, DamagedCheckpointError, LMError
from cs336_lm.nn import TransformerLM
from cs336_lm.run.checkpoint import apply_checkpoint, read_checkpoint
from cs336_lm.run.device import select_device
from cs336_lm.run.rundir import RunDir
from cs336_lm.tokenizer import Tokenizer


def build_model(model_cfg: ModelConfig, device: torch.device | str | None = None) -> TransformerLM:
    """A freshly initialised ``TransformerLM`` of ``model_cfg`` with fp32 weights on ``device``."""
    return TransformerLM.from_args(model_cfg.args, device=device)


@dataclass
class LoadedRun:
    """A trained model (eval mode, on its device), its tokenizer and where they came from."""

    model: TransformerLM
    tokenizer: Tokenizer
    checkpoint: Path
    iteration: int
    config: dict[str, Any]  # the whole config stored in the checkpoint, as plain data
    run_dir: RunDir


def load_run(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    tokenizer_dir: str | os.PathLike | None = None,
    *,
    option: str = "--device",
) -> LoadedRun:
    """Load the model and tokenizer of a run directory or checkpoint file (see the module docstring).

    ``tokenizer_dir`` overrides the run's own ``tokenizer/`` (for a checkpoint moved out of its run directory).
    """
    device = select_device(device, option=option) if isinstance(device, str) else device
    ckpt_path, run_dir = RunDir.locate(path)
    tokenizer_path = Path(tokenizer_dir) if tokenizer_dir is not None else run_dir.tokenizer_dir
    if not tokenizer_path.is_dir():
        where = "--tokenizer" if tokenizer_dir is not None else "a checkpoint is read from inside its run dir"
        raise CheckpointError(f"no tokenizer for {ckpt_path}: expected {tokenizer_path} ({where})")
    try:
        ckpt = read_checkpoint(ckpt_path, map_location="cpu")
    except DamagedCheckpointError as e:
        older = run_dir.resume_candidates()[1:] if Path(path).is_dir() else []
        if older:
            raise DamagedCheckpointError(f"{e}; the run's next older checkpoint is {older[0]}: give that") from None
        raise
    config = ckpt.get("config") or {}
    model = _rebuild(config.get("model"), ckpt_path, device)
    iteration = apply_checkpoint(ckpt, model, name=str(ckpt_path))
    tokenizer = Tokenizer.from_directory(tokenizer_path)
    if tokenizer.vocab_size > model.vocab_size:
        raise CheckpointError(
            f"tokenizer {tokenizer_path} has {tokenizer.vocab_size} tokens but the model in {ckpt_path} "
            f"only {model.vocab_size}: they are not from the same run"
        )
    return LoadedRun(model.eval(), tokenizer, ckpt_path, iteration, config, run_dir)


def _rebuild(model_section: Any, ckpt_path: Path, device: torch.device) -> TransformerLM:
    """The model of a checkpoint's stored ``config["model"]``, on ``device``."""
    if not isinstance(model_section, dict):
        raise CheckpointError(f"{ckpt_path} stores no model config (config['model']); cannot rebuild the model")
    try:
        return build_model(model_from_dict(model_section), device)
    except (LMError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt_path}: its model config {model_section} does not build a model ({e})") from None
