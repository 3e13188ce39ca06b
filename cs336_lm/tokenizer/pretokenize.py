"""Pre-tokenization: the GPT-2 regex, splitting on special tokens, and chunk boundaries in a file.

Byte-level BPE never merges across a pre-token, and never across or into a special token. Text is first
split on the special tokens (longest first, so overlapping specials match whole), then each piece is cut
into pre-tokens by the GPT-2 pattern.
"""

import os
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import regex

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


def iter_pretokens(text: str) -> Iterator[str]:
    """GPT-2 pre-tokens of a text that holds no special token: ``"Hi there!"`` -> ``"Hi", " there", "!"``."""
    for m in PRETOKEN_RE.finditer(text):
        yield m.group()


def find_chunk_boundaries(f: BinaryIO, chunk_bytes: int, split_token: bytes) -> list[int]:
    """Byte offsets ``[0, …, file_size]`` cutting ``f`` into chunks of about ``chunk_bytes`` each.

    Every inner boundary is moved forward to the start of the next ``split_token`` (e.g. ``b"<|endoftext|>"``)
    so no document is cut; a chunk with no token after its nominal end runs to the end of the file.
    Boundaries are strictly increasing and deduplicated.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        return [0]
    chunk_bytes = max(1, chunk_bytes)
    boundaries = [0]
    window = max(4096, len(split_token) * 2)
    pos = chunk_bytes
    while pos < size:
        f.seek(pos)
        carry = b""
        found = -1
        scan = pos
        while scan < size:
            block = f.read(window)
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
