"""Corpus preparation: UTF-8 text files -> one ``.npy`` token file, encoded in parallel in constant memory.

Each input file is cut into chunks of about ``chunk_bytes`` at places where cutting cannot change the ids (the
start of a special token, or a safe newline when there are none; see ``pretokenize.chunk_boundaries``). Worker
processes encode one chunk at a time and write its ids to a part file in a temporary directory beside the
output; the parent appends each part to a temporary output file as soon as every part before it is done (so the
copy runs while the workers encode), then writes the ``.npy`` header (dtype ``token_dtype(vocab_size)``, length =
the sum of the parts) in the room it left for it, and renames the file over the output only when complete.
Memory holds one chunk per worker, never the corpus. Files are encoded each on its own and their ids
concatenated in the order given; nothing is inserted between them, so end each document with a special token
such as ``<|endoftext|>`` when the model should see a boundary there. The result equals
``np.concatenate([tok.encode(open(f).read()) for f in inputs])``.

The workers encode with our ``Tokenizer`` or, where the vocabulary maps exactly onto tiktoken's ranked merges, with
``tiktoken`` (``backend``: ``auto`` picks tiktoken when it is installed and exact; see
``cs336_lm.tokenizer.tiktoken_backend``). Either gives the same ids; tiktoken is two to three times faster. The
check that tiktoken is exact for the vocabulary (~0.2 s for 50,000 merges the first time, then remembered:
``cached_mismatch``) runs on a thread while the workers encode; should it fail, the ids tiktoken wrote are
discarded before anything reaches the output.
"""

import contextlib
import io
import itertools
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from cs336_lm.data.tokens import token_dtype
from cs336_lm.errors import DataError, TokenizerError, WriteError
from cs336_lm.fileio import atomic_write, check_writable, os_reason, output_directory
from cs336_lm.tokenizer.pretokenize import (
    chunk_boundaries,
    decode_utf8,
    default_workers,
    pool_cancelled,
    pool_context,
    worker_pool,
)
from cs336_lm.tokenizer.tiktoken_backend import Backend, BackgroundCheck, select_backend
from cs336_lm.tokenizer.tokenizer import Tokenizer

DEFAULT_CHUNK_BYTES = 2_000_000  # text per task: small enough to balance 2 workers on a 30 MB corpus
TAIL_SPLIT = 4  # the last chunks (one per worker) are cut into this many pieces each
COPY_BYTES = 16 << 20  # part files are appended to the output this many bytes at a time

_worker_tokenizer: Tokenizer | None = None  # set in each worker by _init_worker (inherited as is under fork)
_worker_encoding: Any = None  # the tiktoken.Encoding when that backend encodes, else None


@dataclass(frozen=True)
class TokenizeStats:
    """What ``tokenize_files`` did: ids written, text read, wall time, and how the work was split."""

    out_path: Path
    tokens: int
    bytes: int
    seconds: float
    files: int
    chunks: int
    workers: int
    dtype: str
    backend: str = "ours"
    """``ours`` or ``tiktoken``: which encoder wrote the ids."""
    backend_note: str = ""
    """Why ``backend="auto"`` chose ours (tiktoken missing or not exact for this vocabulary); empty otherwise."""

    @property
    def mb_per_s(self) -> float:
        """Input megabytes (10^6 bytes) encoded per second of wall time."""
        return self.bytes / 1e6 / max(self.seconds, 1e-9)


def tokenize_files(
    tokenizer: Tokenizer | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool | None = None,
    backend: str = "auto",
) -> TokenizeStats:
    """Encode UTF-8 files ``inputs`` with ``tokenizer`` (a ``Tokenizer`` or a tokenizer directory) to ``out_path``.

    ``num_workers`` processes (default: one per CPU, at most one per chunk; 1, or less text than one chunk: in
    this process) encode chunks of about ``chunk_bytes``. ``progress`` shows a tqdm bar in MB (None: only on a
    terminal). ``backend`` is ``auto``, ``ours`` or ``tiktoken`` (``TokenizerError`` when tiktoken is asked for but
    missing or not exact). Raises ``DataError`` for a missing or non-UTF-8 input and ``WriteError`` for an output
    that cannot be written (checked before any work; a full disk shows later); ``out_path`` is then left as it was,
    and directories created for it are removed again. The output is the 1-D ``.npy`` array of all ids, uint16 when
    the vocabulary fits, else uint32.
    """
    start_time = time.perf_counter()
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_directory(tokenizer)
    try:
        dtype = token_dtype(tok.vocab_size)
    except ValueError as e:
        raise DataError(f"cannot store ids of this tokenizer: {e}") from None
    paths = [_check_input(p) for p in inputs]
    if not paths:
        raise DataError("no input files given")
    out_path = _check_output(Path(out_path), paths)
    chosen = select_backend(tok, backend, verify=False)
    check = BackgroundCheck(tok) if not chosen.verified else None
    tasks, total_bytes, workers = _plan_chunks(paths, chunk_bytes, tok.special_tokens, num_workers)
    with (
        output_directory(out_path.parent),
        _parts_directory(out_path) as parts_dir,
        atomic_write(out_path, "wb") as out,
    ):
        jobs = [(i, path, a, b, parts_dir, dtype.str) for i, (path, a, b) in enumerate(tasks)]
        parts = _OrderedParts(out, parts_dir, len(jobs), dtype, max_tokens=total_bytes)
        started = check.start if check is not None else None
        _encode_chunks((tok, chosen.encoding), jobs, workers, total_bytes, progress, parts.add, started)
        reason = check.result() if check is not None else None
        if reason is not None:  # tiktoken is not exact here: refuse, or encode again with ours
            if backend == "tiktoken":
                raise TokenizerError(f"this tokenizer does not map exactly onto tiktoken: {reason}")
            chosen = Backend("ours", reason=reason)
            parts.restart()
            _encode_chunks((tok, None), jobs, workers, total_bytes, progress, parts.add)
        tokens = parts.finish()
    seconds = time.perf_counter() - start_time
    return TokenizeStats(
        out_path, tokens, total_bytes, seconds, len(paths), len(tasks), workers, dtype.name, chosen.name, chosen.reason
    )


Task = tuple[str, int, int]  # (file, first byte, end byte) of one chunk


def _plan_chunks(
    paths: list[Path], chunk_bytes: int, special_tokens: Sequence[str], num_workers: int | None
) -> tuple[list[Task], int, int]:
    """The chunks of every file in order, the bytes they hold, and the workers to encode them (one when the text
    is less than a chunk: starting a pool would cost more than encoding it). With several workers the last chunk
    of each is cut again into ``TAIL_SPLIT`` pieces, so that the workers run out of text together instead of one
    finishing a whole chunk while the others wait."""
    tasks: list[Task] = []
    for path in paths:
        bounds = chunk_boundaries(path, chunk_bytes, special_tokens)
        tasks += [(str(path), a, b) for a, b in itertools.pairwise(bounds)]
    total_bytes = sum(b - a for _, a, b in tasks)
    if total_bytes == 0:
        raise DataError(f"the input files are empty: {', '.join(map(str, paths))}")
    workers = max(1, min(num_workers or default_workers(), len(tasks)))
    if total_bytes < chunk_bytes:
        workers = 1
    if workers > 1:
        finer: list[Task] = []
        for name, start, end in tasks[-workers:]:
            bounds = chunk_boundaries(name, max(1, chunk_bytes // TAIL_SPLIT), special_tokens, start, end)
            finer += [(name, a, b) for a, b in itertools.pairwise(bounds)]
        tasks = tasks[:-workers] + finer
    return tasks, total_bytes, workers


def _check_input(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"input file {path} does not exist")
    if not path.is_file():
        raise DataError(f"input {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise DataError(f"input file {path} is not readable")
    return path


def _check_output(path: Path, inputs: list[Path]) -> Path:
    if path.is_dir():
        raise WriteError(path, f"it is a directory; give a file name such as {path / 'train.npy'}")
    if any(path.exists() and path.samefile(p) for p in inputs):
        raise DataError(f"the output {path} is one of the inputs; writing it would replace that text")
    check_writable(path)
    return path


@contextlib.contextmanager
def _parts_directory(out_path: Path) -> Iterator[str]:
    """A temporary directory beside ``out_path`` for the part files, removed on exit; a failure to create it or to
    write a part file (a full disk) is reported as a failure to write ``out_path``."""
    try:
        parts = tempfile.TemporaryDirectory(prefix=f".{out_path.name}.parts.", dir=out_path.parent)
    except OSError as e:
        raise WriteError(out_path, os_reason(e)) from None
    with parts as parts_dir:
        try:
            yield parts_dir
        except WriteError as e:
            raise WriteError(out_path, e.reason) from None


def _encode_chunks(
    encoders: tuple[Tokenizer, Any],
    jobs: list,
    workers: int,
    total_bytes: int,
    progress: bool | None,
    done: Callable[[int, int], None],
    started: Callable[[], None] | None = None,
) -> None:
    """Run ``_encode_chunk`` over ``jobs`` (in a pool when ``workers > 1``) with ``encoders`` = (our tokenizer,
    the tiktoken encoding or None), calling ``done(index, tokens)`` as each chunk's part file is complete.
    ``started`` is called once the workers exist (a thread started before the fork would be a hazard in the
    children)."""
    context = pool_context() if workers > 1 else None  # chosen before tqdm starts its monitor thread
    disable = None if progress is None else not progress
    with contextlib.ExitStack() as stack:
        if context is None:
            _init_worker(*encoders)
            results: Iterator[tuple[int, int, int]] = map(_encode_chunk, jobs)
        else:
            pool = stack.enter_context(worker_pool(context, workers, _init_worker, encoders))
            results = pool.imap_unordered(_encode_chunk, jobs)
        if started is not None:
            started()
        bar = stack.enter_context(
            tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc="tokenize", disable=disable)
        )
        for index, n_tokens, n_bytes in results:
            done(index, n_tokens)
            bar.update(n_bytes)


def _init_worker(tok: Tokenizer, encoding: Any = None) -> None:
    global _worker_tokenizer, _worker_encoding
    _worker_tokenizer, _worker_encoding = tok, encoding


def _encode_chunk(job: tuple[int, str, int, int, str, str]) -> tuple[int, int, int]:
    """Worker: encode bytes ``[start, end)`` of a file and write the ids, raw, to ``parts_dir/<index>.bin``."""
    index, path, start, end, parts_dir, dtype_str = job
    if pool_cancelled():
        return index, 0, 0
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    assert _worker_tokenizer is not None, "_init_worker runs first in every worker"
    text = decode_utf8(data, path, start)
    dtype = np.dtype(dtype_str)
    if _worker_encoding is not None:  # ids < vocab_size, which token_dtype chose the dtype to hold
        array = _worker_encoding.encode_to_numpy(text, allowed_special="all").astype(dtype, copy=False)
    else:
        ids = _worker_tokenizer.encode(text)
        try:
            array = np.array(ids, dtype=dtype)  # NumPy refuses a Python int outside the dtype's range
        except OverflowError:
            raise DataError(f"{path}: token id {max(ids)} does not fit the token file's dtype {dtype.name}") from None
    part = _part_path(parts_dir, index)
    try:
        with open(part, "wb") as out:
            out.write(array.data)  # a Python write, so a full disk reports its errno
    except OSError as e:
        raise WriteError(part, os_reason(e)) from None
    return index, len(array), len(data)


def _part_path(parts_dir: str, index: int) -> str:
    return os.path.join(parts_dir, f"{index:08d}.bin")


class _OrderedParts:
    """Appends the part files to the output ``out`` in chunk order, each as soon as it and every chunk before it are
    done, so the copy runs while the workers encode. The ``.npy`` header goes first, sized for ``max_tokens`` ids,
    and is written again with the true count by ``finish`` (padded to the same length, as the format allows)."""

    def __init__(self, out: IO, parts_dir: str, num_parts: int, dtype: np.dtype, max_tokens: int):
        self.out, self.parts_dir, self.dtype = out, parts_dir, dtype
        self.header_size = len(npy_header(dtype, max_tokens))
        self.counts: list[int | None] = [None] * num_parts
        self.restart()

    def restart(self) -> None:
        """Discard what was appended (the ids of an encoder found not to be exact) and begin again."""
        self.out.seek(0)
        self.out.truncate()
        self.out.write(b"\0" * self.header_size)
        self.counts = [None] * len(self.counts)
        self.appended = 0

    def add(self, index: int, n_tokens: int) -> None:
        """Chunk ``index`` is encoded (``n_tokens`` ids in its part file): append every part now in order."""
        self.counts[index] = n_tokens
        while self.appended < len(self.counts) and self.counts[self.appended] is not None:
            self._append(self.appended, self.counts[self.appended])  # type: ignore[arg-type]
            self.appended += 1

    def _append(self, index: int, n_tokens: int) -> None:
        part = _part_path(self.parts_dir, index)
        if os.path.getsize(part) != n_tokens * self.dtype.itemsize:
            raise DataError(f"part file {part} has the wrong size; was the temporary directory changed?")
        with open(part, "rb") as f:
            shutil.copyfileobj(f, self.out, COPY_BYTES)
        os.unlink(part)

    def finish(self) -> int:
        """Write the header for the ids appended; their count."""
        if self.appended != len(self.counts):
            raise DataError(f"only {self.appended} of {len(self.counts)} chunks were encoded")
        total = sum(self.counts)  # type: ignore[arg-type]
        self.out.seek(0)
        self.out.write(npy_header(self.dtype, total, size=self.header_size))
        return total


def npy_header(dtype: np.dtype, count: int, size: int | None = None) -> bytes:
    """The ``.npy`` (format 1.0) header of a 1-D array of ``count`` items of ``dtype``, padded with spaces to
    ``size`` bytes when given (a header for a larger count is never shorter: the count is its only part that
    varies)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
    )
    header = buffer.getvalue()
    if size is None or size == len(header):
        return header
    if size < len(header):
        raise ValueError(f"a header for {count} items needs {len(header)} bytes, more than {size}")
    text = header[10:-1] + b" " * (size - len(header)) + b"\n"  # magic, version, length, then the dict's text
    return header[:8] + struct.pack("<H", len(text)) + text
