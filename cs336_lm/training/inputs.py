"""Checks on what a run reads, done before anything is written: tokenizer, token files and their fit to the model.

``check_inputs(cfg)`` loads the tokenizer and both token files (memory-mapped) and raises a one-line
``DataError``/``ConfigError`` for a missing file, a tokenizer whose vocabulary differs from ``model.vocab_size``,
a token id the model has no embedding for, or a split shorter than one training window. The id check scans
the memmap in chunks (``cs336_lm.data.check_token_ids``), so even multi-gigabyte files take bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cs336_lm.config import Config
from cs336_lm.data import check_token_ids, load_tokens
from cs336_lm.errors import ConfigError, DataError, LMError
from cs336_lm.tokenizer import Tokenizer


@dataclass
class Inputs:
    """The validated inputs of a run."""

    tokenizer: Tokenizer
    train_tokens: np.ndarray
    val_tokens: np.ndarray


def check_inputs(cfg: Config) -> Inputs:
    """Load and validate the tokenizer and both splits against ``cfg.model``; see the module docstring."""
    tokenizer = load_tokenizer(Path(cfg.data.tokenizer_dir))
    if tokenizer.vocab_size != cfg.model.vocab_size:
        raise ConfigError(
            f"the tokenizer in {cfg.data.tokenizer_dir} has {tokenizer.vocab_size} token ids but "
            f"model.vocab_size={cfg.model.vocab_size}; set model.vocab_size={tokenizer.vocab_size}"
        )
    splits = {}
    for key, path in (("data.train_path", cfg.data.train_path), ("data.val_path", cfg.data.val_path)):
        tokens = open_tokens(Path(path), key)
        check_length(tokens, cfg.model.context_length, path, key)
        check_ids(tokens, cfg.model.vocab_size, path, key)
        splits[key] = tokens
    return Inputs(tokenizer, splits["data.train_path"], splits["data.val_path"])


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer in ``directory``; a missing or malformed one is a one-line error naming data.tokenizer_dir."""
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "does not exist"
        raise DataError(f"data.tokenizer_dir {directory} {what} (train one with lm-train-bpe)")
    try:
        return Tokenizer.from_directory(directory)
    except LMError as e:
        raise DataError(f"data.tokenizer_dir {directory}: {e}") from None


def open_tokens(path: Path, key: str) -> np.ndarray:
    """Memory-map a token file written by ``lm-tokenize``, naming the config key when it is missing."""
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"{key} {path} {what} (make it with lm-tokenize)")
    return load_tokens(path)


def check_length(tokens: np.ndarray, context_length: int, path: str | Path, key: str) -> None:
    """A window of ``context_length`` inputs needs ``context_length + 1`` tokens (the targets are shifted by one)."""
    if len(tokens) < context_length + 1:
        raise DataError(
            f"{key} {path} holds {len(tokens)} tokens, fewer than one training window of "
            f"model.context_length + 1 = {context_length + 1}; use more data or a smaller model.context_length"
        )


def check_ids(tokens: np.ndarray, vocab_size: int, path: str | Path, key: str) -> None:
    """Every id must index the embedding table (``id < vocab_size``); a chunked scan of the memmap."""
    try:
        check_token_ids(tokens, vocab_size, name=f"{key} {path}")
    except DataError as e:
        raise DataError(f"{e}; was it tokenized with another tokenizer?") from None
