"""Token files on disk and the batches drawn from them.

A split is one 1-D ``.npy`` file of token ids (uint16 when the vocabulary fits in 65,536 ids, else uint32; the
header records dtype and length). ``load_tokens`` memory-maps it, so training never reads a split into RAM:
``get_batch`` gathers only the ``batch × (context + 1)`` ids it needs with one fancy index, and
``iter_eval_batches`` walks a fixed set of evenly spaced windows so validation loss is comparable across runs.
Random starts come from a ``numpy.random.Generator`` the caller owns; its state
(``gen.bit_generator.state``, a dict of ints and strings) goes into checkpoints as it is.
torch is imported on first batch, not with the module, so tools that only write token files
(``lm-tokenize``) start without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from jaxtyping import Int

if TYPE_CHECKING:
    import torch

from cs336_lm.errors import DataError
from cs336_lm.fileio import atomic_write

UINT16_VOCAB_LIMIT = 2**16


def token_dtype(vocab_size: int) -> np.dtype:
    """The on-disk dtype for ids below ``vocab_size``: uint16 up to 65,536 ids, else uint32 (e.g. 10000 → uint16)."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 2**32:
        raise ValueError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
    return np.dtype(np.uint16 if vocab_size <= UINT16_VOCAB_LIMIT else np.uint32)


def load_tokens(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a token file (``np.load(path, mmap_mode="r", allow_pickle=False)``) and check it is 1-D ints.

    Raises ``DataError`` naming the file when it is missing, truncated, not a ``.npy`` array, or has the wrong
    shape or dtype. Nothing is read beyond the header until the array is indexed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"token file {path} does not exist")
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise DataError(f"{path} is not a readable .npy token file (truncated or another format?): {e}") from None
    if not isinstance(tokens, np.ndarray):  # an .npz archive loads as a mapping of arrays
        raise DataError(f"{path} is a NumPy archive, not a single .npy token array")
    if tokens.ndim != 1 or tokens.dtype.kind not in "ui":
        raise DataError(f"{path} holds a {tokens.ndim}-D {tokens.dtype} array; a token file is a 1-D integer array")
    return tokens


def write_tokens(path: str | os.PathLike, ids, vocab_size: int) -> Path:
    """Write ``ids`` atomically as a token file with ``token_dtype(vocab_size)``; returns the path.

    Meant for tests and small data (the whole array is in memory; ``lm-tokenize`` streams big corpora).
    Raises ``DataError`` when an id is negative or ``>= vocab_size``.
    """
    path = Path(path)
    ids = np.asarray(ids)
    if ids.size == 0:
        ids = ids.astype(np.int64)
    if ids.ndim != 1 or ids.dtype.kind not in "ui":
        raise DataError(f"token ids for {path} must be a 1-D integer array, got {ids.ndim}-D {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise DataError(f"token ids for {path} must lie in [0, {vocab_size}); found {ids.min()}..{ids.max()}")
    with atomic_write(path, "wb") as f:
        np.save(f, ids.astype(token_dtype(vocab_size)), allow_pickle=False)
    return path


def check_token_ids(tokens: np.ndarray, vocab_size: int, name: str = "token file", chunk: int = 1 << 24) -> None:
    """Raise ``DataError`` if any id in ``tokens`` is ``>= vocab_size``; scans a memmap ``chunk`` ids at a time."""
    if np.iinfo(tokens.dtype).max < vocab_size and np.iinfo(tokens.dtype).min >= 0:
        return  # the dtype cannot even hold an id that large
    for start in range(0, len(tokens), chunk):
        part = tokens[start : start + chunk]
        bad = np.flatnonzero((part >= vocab_size) | (part < 0))
        if bad.size:
            i = start + int(bad[0])
            raise DataError(f"{name}: token id {int(tokens[i])} at position {i} is outside vocab_size {vocab_size}")


def _check_length(dataset: np.ndarray, context_length: int) -> None:
    if dataset.ndim != 1:
        raise DataError(f"token data must be 1-D, got shape {dataset.shape}")
    if context_length < 1 or len(dataset) <= context_length:
        raise DataError(
            f"token data of {len(dataset)} ids is too short for context_length {context_length} "
            f"(a window needs context_length + 1 ids)"
        )


def _windows_to_device(
    dataset: np.ndarray, starts: np.ndarray, context_length: int, device: str | torch.device
) -> tuple[Int[torch.Tensor, "batch seq"], Int[torch.Tensor, "batch seq"]]:
    """Gather ``dataset[s : s + T + 1]`` for each start (only those ids are read) and split into inputs/targets."""
    import torch

    index = starts[:, None] + np.arange(context_length + 1)  # (batch, seq + 1)
    window = torch.from_numpy(dataset[index].astype(np.int64))  # (batch, seq + 1), a copy of just these ids
    device = torch.device(device)
    if device.type == "cuda":
        # one pinned staging buffer holding x and y, copied asynchronously with the host free to go on
        staged = torch.empty((2, len(starts), context_length), dtype=torch.int64, pin_memory=True)
        staged[0].copy_(window[:, :-1])
        staged[1].copy_(window[:, 1:])
        staged = staged.to(device, non_blocking=True)
        return staged[0], staged[1]
    return window[:, :-1].contiguous().to(device), window[:, 1:].contiguous().to(device)


def get_batch(
    dataset: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    generator: np.random.Generator | None = None,
) -> tuple[Int[torch.Tensor, "batch seq"], Int[torch.Tensor, "batch seq"]]:
    """Sample ``batch_size`` windows: ``x[b] = data[s_b : s_b + T]``, ``y[b] = data[s_b + 1 : s_b + T + 1]``.

    Starts ``s_b`` are uniform over ``[0, len − T)`` (so the last target is at most ``data[len − 1]``), drawn from
    ``generator`` or, when it is None, NumPy's global RNG. Both tensors are int64 on ``device``, contiguous;
    on CUDA they go through pinned memory with ``non_blocking=True``. ``dataset`` is any 1-D integer array,
    typically the memmap from ``load_tokens``; it is never copied. Example: data ``[10, 11, 12, 13]``, T = 2 →
    x is ``[10, 11]`` or ``[11, 12]``, y the same window shifted by one.
    """
    _check_length(dataset, context_length)
    high = len(dataset) - context_length
    if generator is None:
        starts = np.random.randint(0, high, size=batch_size).astype(np.int64)
    else:
        starts = generator.integers(0, high, size=batch_size, dtype=np.int64)
    return _windows_to_device(dataset, starts, context_length, device)


def eval_window_starts(num_tokens: int, context_length: int, num_windows: int) -> np.ndarray:
    """``num_windows`` evenly spaced starts from 0 to the last possible one, ``num_tokens − T − 1`` (exact ints).

    Example: 101 tokens, T = 10, 4 windows → starts 0, 30, 60, 90: the first window begins the split and the
    last one's target ends it. Windows overlap when the split is shorter than ``num_windows·T``.
    """
    last = num_tokens - context_length - 1
    if last < 0:
        raise DataError(f"token data of {num_tokens} ids is too short for context_length {context_length}")
    return np.arange(num_windows, dtype=np.int64) * last // max(num_windows - 1, 1)


def iter_eval_batches(
    dataset: np.ndarray,
    batch_size: int,
    context_length: int,
    num_batches: int | None,
    device: str | torch.device,
) -> Iterator[tuple[Int[torch.Tensor, "batch seq"], Int[torch.Tensor, "batch seq"]]]:
    """Yield ``(x, y)`` validation batches over a fixed, deterministic set of windows (no RNG involved).

    ``num_batches`` full batches whose ``num_batches·batch_size`` windows are evenly spaced over the split
    (``eval_window_starts``), so the same split always gives the same windows; ``None`` means just enough
    windows, ``ceil((len − 1) / T)``, for their targets to cover every position of the split (the last batch may be
    smaller).
    """
    _check_length(dataset, context_length)
    # with None: ceil((len - 1) / T) windows, so that every target position is covered
    num_windows = -(-(len(dataset) - 1) // context_length) if num_batches is None else num_batches * batch_size
    starts = eval_window_starts(len(dataset), context_length, num_windows)
    for i in range(0, num_windows, batch_size):
        yield _windows_to_device(dataset, starts[i : i + batch_size], context_length, device)
