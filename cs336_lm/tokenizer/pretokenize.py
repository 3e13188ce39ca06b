"""Pre-tokenization: the GPT-2 regex, splitting on special tokens, chunk boundaries, and parallel counting.

Byte-level BPE never merges across a pre-token, and never across or into a special token. Text is first
split on the special tokens (longest first, so overlapping specials match whole), then each piece is cut
into pre-tokens by the GPT-2 pattern. ``count_pretokens`` does this for a whole file as a map-reduce: the
file is cut into bounded chunks at places where cutting cannot change the result (the start of a special
token, or a newline between two visible ASCII characters when there is no special token), worker processes
count the pre-tokens of one chunk each, and the parent adds the counters up.
"""

import contextlib
import itertools
import multiprocessing
import multiprocessing.pool
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO

import regex
from tqdm import tqdm

from cs336_lm.errors import DataError

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)


def special_token_regex(special_tokens: Sequence[str]) -> re.Pattern | None:
    """A regex matching any special token, longest first; one capturing group so ``split`` keeps them.

    ``["<|a|>", "<|a|><|a|>"]`` matches ``"<|a|><|a|>"`` as one token, not two.
    """
    if not special_tokens:
        return None
    alternatives = sorted(set(special_tokens), key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")")


def split_on_special_tokens(text: str, special_tokens: Sequence[str], keep: bool = False) -> list[str]:
    """Split ``text`` at special tokens: ``"a<|e|>b"`` -> ``["a", "b"]`` (or ``["a", "<|e|>", "b"]`` with keep).

    Empty pieces are dropped.
    """
    pattern = special_token_regex(special_tokens)
    if pattern is None:
        return [text] if text else []
    parts = pattern.split(text)
    if not keep:
        parts = parts[0::2]
    return [p for p in parts if p]


def find_chunk_boundaries(
    f: BinaryIO, chunk_bytes: int, split_token: bytes, start: int = 0, end: int | None = None
) -> list[int]:
    """Byte offsets ``[0, …, file_size]`` cutting ``f`` into chunks of about ``chunk_bytes`` each.

    Every inner boundary is moved forward to the start of the next ``split_token`` (e.g. ``b"<|endoftext|>"``)
    so no document is cut; a chunk with no token after its nominal end runs to the end of the file.
    Boundaries are strictly increasing and deduplicated. ``start``/``end`` cut only the bytes between them, as if
    they were the whole file: ``[start, …, end]``.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell() if end is None else end
    if size <= start:
        return [start]
    chunk_bytes = max(1, chunk_bytes)
    boundaries = [start]
    window = max(4096, len(split_token) * 2)
    pos = start + chunk_bytes
    while pos < size:
        f.seek(pos)
        carry = b""
        found = -1
        scan = pos
        while scan < size:
            block = f.read(min(window, size - scan))
            if not block:
                break
            buf = carry + block
            idx = buf.find(split_token)
            if idx >= 0:
                found = scan - len(carry) + idx
                break
            carry = buf[-(len(split_token) - 1) :] if len(split_token) > 1 else b""
            scan += len(block)
        if found < 0:
            break
        if found > boundaries[-1]:
            boundaries.append(found)
        pos = max(found, boundaries[-1]) + chunk_bytes
    boundaries.append(size)
    return boundaries


# Chunks are read whole by one process, so this bounds the text in memory per worker. Inputs that fit in one
# chunk are counted in-process: starting a pool costs more than counting a few MB.
DEFAULT_CHUNK_BYTES = 4 << 20
_SAFE_NEWLINE_RE = re.compile(rb"[!-~]\n[!-~]")


def find_newline_boundaries(f: BinaryIO, chunk_bytes: int, start: int = 0, end: int | None = None) -> list[int]:
    """Byte offsets ``[0, …, file_size]`` for a file with no special token, cut only where it is safe.

    A cut goes right after a ``\\n`` that sits between two visible ASCII characters (``b"x\\ny"`` -> cut
    before ``y``). There the GPT-2 pattern ends a pre-token (the ``\\n`` is a one-character whitespace
    pre-token; no alternative spans it or looks past it), so counting the two sides separately gives the
    same pre-tokens as counting the whole. A file with no such place is one chunk. ``start``/``end`` cut only
    the bytes between them, as if they were the whole file: ``[start, …, end]``.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell() if end is None else end
    boundaries = [start]
    pos = start + max(1, chunk_bytes)
    window = 1 << 16
    while pos < size:
        f.seek(pos - 1)
        found = -1
        scan = pos - 1
        while scan < size:
            buf = f.read(min(window + 2, size - scan))
            m = _SAFE_NEWLINE_RE.search(buf)
            if m:
                found = scan + m.start() + 2
                break
            if scan + len(buf) >= size:
                break
            scan += window
            f.seek(scan)
        if found < 0:
            break
        boundaries.append(found)
        pos = found + max(1, chunk_bytes)
    if size > start:
        boundaries.append(size)
    return boundaries


def _cut_inside_special(f: BinaryIO, pos: int, specials: list[bytes]) -> bool:
    """True when some special token occurrence starts before ``pos`` and ends after it.

    Such a cut could split a special token (e.g. ``b"x<|e|>"`` found at ``<|e|>`` when ``x<|e|>`` is also
    special), so the caller drops it; any other cut leaves the special-token split unchanged.
    """
    longest = max(len(s) for s in specials)
    lo = max(0, pos - longest + 1)
    f.seek(lo)
    buf = f.read(pos - lo + longest - 1)
    for s in specials:
        i = buf.find(s)
        while i >= 0:
            if lo + i < pos < lo + i + len(s):
                return True
            i = buf.find(s, i + 1)
    return False


def chunk_boundaries(
    path: str | os.PathLike, chunk_bytes: int, special_tokens: Sequence[str], start: int = 0, end: int | None = None
) -> list[int]:
    """Where to cut ``path`` into chunks of about ``chunk_bytes`` that can be pre-tokenized independently.

    With special tokens: at the first occurrence of the first special token after each nominal boundary
    (``find_chunk_boundaries``), except a cut that would fall inside another special token. Without: at
    safe newlines (``find_newline_boundaries``). ``start``/``end`` (two earlier boundaries) cut just the chunk
    between them again.
    """
    with open(path, "rb") as f:
        if not special_tokens:
            return find_newline_boundaries(f, chunk_bytes, start, end)
        specials = [s.encode("utf-8") for s in special_tokens]
        bounds = find_chunk_boundaries(f, chunk_bytes, specials[0], start, end)
        inner = [b for b in bounds[1:-1] if not _cut_inside_special(f, b, specials)]
        return [bounds[0], *inner, bounds[-1]] if len(bounds) > 1 else bounds


def decode_utf8(data: bytes, path: str | os.PathLike, offset: int = 0) -> str:
    """``data.decode("utf-8")``, but a bad byte raises ``DataError`` naming the file and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad, where = data[e.start], offset + e.start
        raise DataError(f"{path} is not UTF-8 text: invalid byte 0x{bad:02x} at byte offset {where}") from None


def count_text_pretokens(text: str, special_tokens: Sequence[str]) -> Counter[str]:
    """Pre-token counts of ``text`` after removing the special tokens.

    ``count_text_pretokens("a a<|e|>a", ["<|e|>"])`` -> ``Counter({"a": 2, " a": 1})``.
    """
    counts: Counter[str] = Counter()
    for piece in split_on_special_tokens(text, special_tokens):
        counts.update(PRETOKEN_RE.findall(piece))
    return counts


def _count_chunk(task: tuple[str, int, int, tuple[str, ...]]) -> tuple[int, Counter[str]]:
    """Worker: read bytes ``[start, end)`` of the file and count their pre-tokens."""
    path, start, end, special_tokens = task
    if pool_cancelled():
        return 0, Counter()
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return len(data), count_text_pretokens(decode_utf8(data, path, start), special_tokens)


def pool_context() -> multiprocessing.context.BaseContext:
    """The start method for counting workers, chosen deliberately: ``fork`` on Linux, else the platform's default.

    Forked workers start in milliseconds, need nothing but the chunk offsets pickled, and work from any
    caller, including a script without an ``if __name__ == "__main__":`` guard. Forking is unsafe when a
    child needs a lock that another parent thread held at the fork; these children only read their chunk,
    run the regex and send back a Counter, so parent threads (tqdm's monitor, a caller's pool) cannot block
    them. On macOS fork is unsafe with system frameworks and Windows has none, so there ``spawn`` is used
    (the platform default, which needs the main-module guard).
    """
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


_cancelled: Any = None  # in a worker of ``worker_pool``: the pool's Event, set when the parent gives up


def _start_worker(cancelled: Any, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    global _cancelled
    _cancelled = cancelled
    if initializer is not None:
        initializer(*initargs)


def pool_cancelled() -> bool:
    """In a worker of ``worker_pool``: whether the parent has given up, so the task should return at once."""
    return _cancelled is not None and _cancelled.is_set()


@contextlib.contextmanager
def worker_pool(
    context: multiprocessing.context.BaseContext,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of ``workers`` that ends by letting its workers finish, never by killing one mid-write.

    ``Pool.terminate`` (what ``with Pool()`` does on the way out) kills the workers wherever they are; one killed
    while writing its result holds the result queue's lock forever, and the pool's task thread then waits on that
    lock, so ``terminate`` never returns: a rare hang after an error, seen once in the test suite. Here an error
    (a task's exception raised in the parent, or the parent's own) sets an Event that every task checks first
    (``pool_cancelled``): the tasks not yet begun return at once, the pool is closed and joined, and the error goes
    on. Only an interrupt (Ctrl-C, which the workers receive too, and which may lose a task) still terminates.
    """
    cancelled = context.Event()
    pool = context.Pool(workers, initializer=_start_worker, initargs=(cancelled, initializer, initargs))
    try:
        yield pool
    except Exception:
        cancelled.set()
        pool.close()
        pool.join()
        raise
    except BaseException:
        pool.terminate()
        raise
    pool.close()
    pool.join()


def default_workers() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool | None = None,
) -> dict[bytes, int]:
    """Map-reduce pre-token counting of a UTF-8 file: ``{pre-token bytes: occurrences}``, specials excluded.

    The file is cut by ``chunk_boundaries`` into chunks of about ``chunk_bytes``. One chunk, or
    ``num_workers == 1``, is counted in this process; otherwise a pool of ``num_workers`` (default: one per
    CPU, at most one per chunk) counts chunks, results are added up here as they arrive
    (``imap_unordered``), and memory holds the distinct pre-tokens plus one chunk per worker. Serial and
    parallel runs return equal counts. ``progress`` shows a tqdm bar in bytes (None: only on a terminal).
    """
    path = str(path)
    bounds = chunk_boundaries(path, chunk_bytes, special_tokens)
    tasks = [(path, a, b, tuple(special_tokens)) for a, b in itertools.pairwise(bounds)]
    workers = min(num_workers or default_workers(), len(tasks))
    context = pool_context() if workers > 1 else None
    disable = None if progress is None else not progress
    total: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        if context is None:
            results: Iterator[tuple[int, Counter[str]]] = map(_count_chunk, tasks)
        else:
            results = stack.enter_context(worker_pool(context, workers)).imap_unordered(_count_chunk, tasks)
        bar = tqdm(total=bounds[-1], unit="B", unit_scale=True, desc="pre-tokenize", disable=disable)
        stack.enter_context(bar)
        for nbytes, counts in results:
            if total:
                total.update(counts)
            else:
                total = counts
            bar.update(nbytes)
    return {word.encode("utf-8"): n for word, n in total.items()}
