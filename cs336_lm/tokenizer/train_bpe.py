"""``train_bpe``: byte-level BPE training on a text file, GPT-2 / CS336 style.

Two phases: count the pre-tokens of the file (``pretokenize.count_pretokens``, a map-reduce over worker
processes for large files), then learn merges from those counts (``merge.learn_merges``). This module
checks the input, runs both and lays out the vocabulary: special tokens first, then the 256 bytes, then one
token per merge.
"""

import os
import time
from collections.abc import Sequence
from pathlib import Path

from cs336_lm.errors import ConfigError, DataError, TokenizerError
from cs336_lm.tokenizer.merge import learn_merges
from cs336_lm.tokenizer.pretokenize import DEFAULT_CHUNK_BYTES, count_pretokens


def check_special_tokens(special_tokens: Sequence[str]) -> list[str]:
    """The special tokens without repeats, in their first order; an empty or non-string one is an error."""
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"special tokens must be non-empty strings, got {token!r}")
    return list(dict.fromkeys(special_tokens))


def check_input_file(input_path: str | os.PathLike) -> Path:
    """``input_path`` as a Path, or ``DataError`` when it is missing, not a file, unreadable or empty."""
    path = Path(input_path)
    if not path.exists():
        raise DataError(f"input file not found: {path}")
    if not path.is_file():
        raise DataError(f"input is not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise DataError(f"input file is not readable: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"input file is empty: {path}")
    return path


def build_vocab(special_tokens: Sequence[str], merges: Sequence[tuple[bytes, bytes]]) -> dict[int, bytes]:
    """Ids 0…k−1 for the special tokens (UTF-8), k…k+255 for the bytes, then each new merged token in order.

    ``build_vocab(["<|e|>"], [(b"a", b"b")])`` -> ``{0: b"<|e|>", 1: b"\\x00", …, 256: b"\\xff", 257: b"ab"}``.
    A merge whose result is already in the vocabulary adds no id.
    """
    vocab = {i: token.encode("utf-8") for i, token in enumerate(special_tokens)}
    for byte in range(256):
        vocab[len(vocab)] = bytes([byte])
    known = set(vocab.values())
    for left, right in merges:
        if left + right not in known:
            known.add(left + right)
            vocab[len(vocab)] = left + right
    return vocab


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str],
    num_workers: int | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on the UTF-8 text file ``input_path``; return ``(vocab, merges)``.

    The text is split on the special tokens (which are removed, so no merge crosses or enters one) and
    cut into GPT-2 pre-tokens; each step then merges the most frequent adjacent pair within pre-tokens.
    Ties go to the lexicographically greater pair ``(bytes_a, bytes_b)``: if ``(b"e", b"s")`` and
    ``(b"s", b"t")`` both occur 9 times, ``(b"s", b"t")`` is merged; between ``(b"a", b"bc")`` and
    ``(b"a", b"b")`` the first wins (a longer string with the same prefix is greater).

    The vocabulary holds the special tokens (ids 0…k−1, in the given order; repeats dropped), the 256
    bytes, then one token per merge in creation order, ``vocab_size`` entries in all — fewer when the text
    runs out of pairs first (every pre-token already one token), in which case training stops early. In
    the rare case that a merge makes bytes that already have an id (``a+bc`` after ``ab+c``) it stays in
    ``merges`` but adds no id, so vocabulary entries stay distinct (as GPT-2's vocab.json requires) and
    ``merges`` may be longer than ``vocab_size - 256 - k``.

    ``num_workers`` processes count pre-tokens (default: one per CPU, at most one per chunk of
    ``chunk_bytes``); a file that fits in one chunk is counted in this process. Results do not depend on
    either. ``progress`` shows tqdm bars (None: only on a terminal). A ``timings`` dict receives the
    seconds spent in each phase (``"pretokenize"``, ``"merge"``).

    Raises ``DataError`` for a missing, unreadable, empty or non-UTF-8 file (naming the byte offset) and
    ``TokenizerError`` when ``vocab_size < 256 + len(special_tokens)``.
    """
    specials = check_special_tokens(special_tokens)
    if vocab_size < 256 + len(specials):
        raise TokenizerError(
            f"vocab_size {vocab_size} is too small: it must hold the 256 bytes and {len(specials)} "
            f"special token(s), i.e. be at least {256 + len(specials)}"
        )
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"num_workers must be at least 1, got {num_workers}")
    path = check_input_file(input_path)
    start = time.perf_counter()
    word_counts = count_pretokens(path, specials, num_workers, chunk_bytes=chunk_bytes, progress=progress)
    counted = time.perf_counter()
    merges = learn_merges(word_counts, vocab_size - 256 - len(specials), progress=progress)
    if timings is not None:
        timings.update(pretokenize=counted - start, merge=time.perf_counter() - counted)
    return build_vocab(specials, merges), merges
