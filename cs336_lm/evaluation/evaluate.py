"""``lm-perplexity``'s library: a checkpoint's loss, perplexity and bits per byte on a text file or a token file.

Over ``n`` tokens the model scores tokens ``1 … n−1`` once each (``windows.score_windows``), so

    loss = Σ −ln p(token | its left context) / (n − 1)      perplexity = e^loss
    bits per byte = Σ −ln p / ln 2 / (UTF-8 bytes of tokens 1 … n−1)

Bytes are counted from the text (its UTF-8 size less the first token's bytes) or, for a ``.npy`` token file, from
the bytes of the ids. A ``.txt`` file is encoded with the run's tokenizer (through tiktoken when it maps the
vocabulary exactly; the ids are the same). Nothing trains: the model runs in eval mode under
``torch.inference_mode``, in fp32 unless bf16 autocast is asked for. ``evaluate_run`` does this for a checkpoint,
a run's latest, or every checkpoint of a run (``all_checkpoints``), tokenizing the data once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cs336_lm.data.tokens import check_token_ids, load_tokens
from cs336_lm.errors import DataError
from cs336_lm.evaluation.windows import Window, score_windows
from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir, load_run, select_device
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.tokenizer.tiktoken_backend import select_backend
from cs336_lm.training.metrics import read_metrics

LOGITS_BUDGET_BYTES = 1 << 28  # the automatic batch size keeps one batch's fp32 logits under 256 MB
MAX_AUTO_BATCH = 64
PROGRESS_MIN_TOKENS = 1 << 16  # the default progress bar appears on a terminal for files at least this long


@dataclass(frozen=True)
class EvalResult:
    """One checkpoint on one file: summed loss over ``tokens`` scored targets spelling ``bytes`` UTF-8 bytes."""

    checkpoint: str
    step: int
    data: str
    loss_sum: float
    tokens: int
    bytes: int
    context: int
    stride: int
    train_tokens: int | None = None
    """Training tokens seen at ``step``, from the run's metrics.jsonl when it records them."""

    @property
    def loss(self) -> float:
        """Mean cross-entropy per scored token, in nats."""
        return self.loss_sum / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf

    @property
    def bits_per_byte(self) -> float:
        return self.loss_sum / math.log(2) / self.bytes if self.bytes else math.nan

    def record(self) -> dict[str, Any]:
        """A JSON record (``lm-plot`` draws ``eval_loss`` against ``step`` and ``tokens``)."""
        return {
            "step": self.step,
            "tokens": self.train_tokens,
            "eval_loss": self.loss,
            "eval_ppl": self.perplexity,
            "eval_bpb": self.bits_per_byte,
            "eval_tokens": self.tokens,
            "eval_bytes": self.bytes,
            "eval_data": self.data,
            "checkpoint": self.checkpoint,
            "context": self.context,
            "stride": self.stride,
        }


# ---------------------------------------------------------------------------------------------- data


def load_eval_data(path: str | os.PathLike, tokenizer: Tokenizer) -> tuple[np.ndarray, int]:
    """``(ids, bytes)``: the ids of a ``.txt`` (encoded here) or ``.npy`` file and the UTF-8 bytes of the tokens that
    get scored (all but the first). ``DataError`` for a missing, non-UTF-8, too short or out-of-vocabulary file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data {path} does not exist")
    if path.suffix == ".npy":
        ids = load_tokens(path)
        check_token_ids(ids, tokenizer.vocab_size, name=str(path))
        lengths = np.zeros(tokenizer.vocab_size, dtype=np.int64)
        for i, data in tokenizer.vocab.items():
            lengths[i] = len(data)
        total = sum(int(lengths[ids[s : s + (1 << 22)]].sum()) for s in range(0, len(ids), 1 << 22))
    else:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}); give .txt or .npy") from None
        ids = _encode(tokenizer, text)
        total = len(data)
    if len(ids) < 2:
        raise DataError(f"{path} holds {len(ids)} token(s); scoring needs at least 2")
    return ids, total - len(tokenizer.vocab[int(ids[0])])


def _encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    backend = select_backend(tokenizer, "auto")
    if backend.encoding is not None:
        return backend.encoding.encode_to_numpy(text, allowed_special="all").astype(np.int64)
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


# ---------------------------------------------------------------------------------------------- scoring


def auto_batch_size(context: int, vocab_size: int) -> int:
    """Windows per forward so that the fp32 logits stay under ``LOGITS_BUDGET_BYTES``."""
    return max(1, min(MAX_AUTO_BATCH, LOGITS_BUDGET_BYTES // (4 * context * vocab_size)))


def evaluate_ids(
    model: TransformerLM,
    ids: np.ndarray,
    context: int,
    stride: int,
    *,
    batch_size: int | None = None,
    bf16: bool = False,
    progress: bool | None = None,
) -> tuple[float, int]:
    """``(Σ −ln p, tokens scored)`` of ``ids`` under ``model`` over ``score_windows(len(ids), context, stride)``.

    ``progress``: a tqdm bar on stderr (None: on a terminal, for at least ``PROGRESS_MIN_TOKENS`` tokens)."""
    device = model.lm_head.weight.device
    windows = score_windows(len(ids), context, stride)
    batch_size = batch_size or auto_batch_size(context, model.vocab_size)
    total, count = 0.0, 0
    if progress is None:  # on a terminal, for long files
        disable: bool | None = None if len(ids) >= PROGRESS_MIN_TOKENS else True
    else:
        disable = not progress
    bar = tqdm(total=len(ids) - 1, unit="tok", unit_scale=True, desc="eval", disable=disable)
    model.eval()
    with bar, torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in _batches(windows, batch_size):
            nll, scored = _window_losses(model, ids, batch, device)
            total += nll
            count += scored
            bar.update(scored)
    return total, count


def _batches(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive windows of one length, at most ``batch_size`` at a time."""
    batch: list[Window] = []
    for w in windows:
        if batch and (len(batch) == batch_size or w.length != batch[0].length):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def _window_losses(
    model: TransformerLM, ids: np.ndarray, batch: list[Window], device: torch.device
) -> tuple[float, int]:
    """Summed ``−ln p`` of the scored targets of windows of equal length, and how many were scored."""
    length = batch[0].length
    rows = np.stack([np.asarray(ids[w.start : w.start + length + 1], dtype=np.int64) for w in batch])
    tokens = torch.from_numpy(rows).to(device)  # (windows, length + 1)
    logits = model(tokens[:, :-1]).float()  # (windows, length, vocab_size)
    targets = tokens[:, 1:]  # (windows, length)
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (windows, length)
    skip = torch.tensor([w.skip for w in batch], device=device)
    scored = torch.arange(length, device=device) >= skip[:, None]  # (windows, length)
    return float(nll[scored].double().sum()), int(scored.sum())


# ---------------------------------------------------------------------------------------------- runs


def evaluate_run(
    path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    context: int | None = None,
    stride: int | None = None,
    all_checkpoints: bool = False,
    device: str = "auto",
    bf16: bool = False,
    batch_size: int | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> list[EvalResult]:
    """Evaluate the run or checkpoint ``path`` on ``data`` (every checkpoint of the run, oldest first, with
    ``all_checkpoints``). ``context`` defaults to the model's, ``stride`` to ``context``; ``tokenizer_dir``
    replaces the run's ``tokenizer/`` (for a checkpoint moved out of its run)."""
    torch_device = select_device(device, option="--device")
    first, run_dir = RunDir.locate(path)
    checkpoints = _checkpoints(Path(path), run_dir) if all_checkpoints else [first]
    tokenizer_dir = tokenizer_dir or run_dir.tokenizer_dir
    loaded = load_run(checkpoints[0], torch_device, tokenizer_dir)
    context = context or loaded.model.context_length
    stride = stride or context
    _check_window(context, stride, loaded.model.context_length)
    ids, n_bytes = load_eval_data(data, loaded.tokenizer)
    check_token_ids(ids, loaded.model.vocab_size, name=str(data))
    seen = _train_tokens(run_dir)
    results = []
    for k, ckpt in enumerate(checkpoints):
        if k:
            loaded = load_run(ckpt, torch_device, tokenizer_dir)
            _check_window(context, stride, loaded.model.context_length)
        loss_sum, count = evaluate_ids(
            loaded.model, ids, context, stride, batch_size=batch_size, bf16=bf16, progress=progress
        )
        step = loaded.iteration
        results.append(
            EvalResult(str(ckpt), step, str(data), loss_sum, count, n_bytes, context, stride, seen.get(step))
        )
    return results


def _checkpoints(path: Path, run_dir: RunDir) -> list[Path]:
    if not path.is_dir():
        raise DataError(f"--all-checkpoints needs a run directory, not the checkpoint file {path}")
    return run_dir.checkpoints()


def _check_window(context: int, stride: int, model_context: int) -> None:
    if not 1 <= context <= model_context:
        raise DataError(f"--context must be between 1 and the model's context length {model_context}, got {context}")
    if not 1 <= stride <= context:
        raise DataError(f"--stride must be between 1 and --context ({context}), got {stride}")


def _train_tokens(run_dir: RunDir) -> dict[int, int]:
    """``{step: training tokens seen}`` from the run's metrics.jsonl (empty when it has none)."""
    seen = {}
    for record in read_metrics(run_dir.metrics_file):
        if isinstance(record.get("step"), int) and isinstance(record.get("tokens"), int):
            seen[record["step"]] = record["tokens"]
    return seen
