"""Streaming text: turn token ids into text as they arrive without ever printing half a character.

A byte-level BPE token can end in the middle of a UTF-8 character (an emoji is four bytes and may be split
over several tokens). ``Utf8StreamDecoder`` buffers the bytes it is fed and emits only complete characters;
a trailing run of bytes that could still become a valid character is held back until the next feed.
Everything else is decoded exactly like ``bytes.decode("utf-8", errors="replace")`` — each invalid byte
sequence becomes U+FFFD — so the concatenation of all emitted pieces equals the decode of the whole stream.
``TokenTextStream`` puts a token-id → bytes table in front of it.
"""

from collections.abc import Iterable, Mapping

# Allowed range of the byte after each lead byte (Unicode Table 3-7, well-formed UTF-8); later bytes are 80..BF.
_SECOND_BYTE = {
    **{b: (0x80, 0xBF) for b in range(0xC2, 0xE0)},
    0xE0: (0xA0, 0xBF),
    **{b: (0x80, 0xBF) for b in range(0xE1, 0xED)},
    0xED: (0x80, 0x9F),
    0xEE: (0x80, 0xBF),
    0xEF: (0x80, 0xBF),
    0xF0: (0x90, 0xBF),
    0xF1: (0x80, 0xBF),
    0xF2: (0x80, 0xBF),
    0xF3: (0x80, 0xBF),
    0xF4: (0x80, 0x8F),
}


def _sequence_length(lead: int) -> int:
    """Bytes in the character a valid lead byte starts: C2..DF → 2, E0..EF → 3, F0..F4 → 4."""
    return 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def incomplete_tail(buf: bytes | bytearray) -> int:
    """Length of the suffix of ``buf`` that is a proper prefix of a well-formed UTF-8 character (0 if none).

    Examples: ``b"a\\xf0\\x9f\\x98"`` → 3 (three of the four bytes of an emoji); ``b"a\\xe4\\xb8\\xad"`` → 0
    (the character is complete); ``b"\\xe0\\x80"`` → 0 (``E0 80`` can never be valid, so it is not held back).
    """
    n = len(buf)
    for start in range(n - 1, max(n - 4, -1), -1):
        lead = buf[start]
        if 0x80 <= lead <= 0xBF:  # a continuation byte: the lead, if any, is further left
            continue
        if lead not in _SECOND_BYTE or n - start >= _sequence_length(lead):
            return 0
        if n - start >= 2:
            lo, hi = _SECOND_BYTE[lead]
            if not lo <= buf[start + 1] <= hi:
                return 0
        return n - start  # bytes after the second are continuation bytes (checked by the loop)
    return 0


class Utf8StreamDecoder:
    """Feed bytes, get back the text of every character completed so far.

    >>> d = Utf8StreamDecoder()
    >>> d.feed(b"hi \\xf0\\x9f"), d.feed(b"\\x98\\x80!"), d.flush()
    ('hi ', '😀!', '')
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> str:
        """Add ``data``; return the newly completed text (possibly ``""``)."""
        self._pending += data
        hold = incomplete_tail(self._pending)
        cut = len(self._pending) - hold
        text = self._pending[:cut].decode("utf-8", errors="replace")
        del self._pending[:cut]
        return text

    def flush(self) -> str:
        """End of stream: decode whatever is held back (an unfinished character becomes U+FFFD)."""
        text = self._pending.decode("utf-8", errors="replace")
        self._pending.clear()
        return text


REPLACEMENT = "\ufffd".encode()


class TokenTextStream:
    """Token ids in, printable text out: ``vocab`` maps each id to its bytes (a tokenizer's vocabulary).

    An id the vocabulary lacks (a model whose embedding table is larger than its tokenizer) prints as U+FFFD.
    """

    def __init__(self, vocab: Mapping[int, bytes]) -> None:
        self.vocab = vocab
        self._decoder = Utf8StreamDecoder()

    def feed(self, token_ids: int | Iterable[int]) -> str:
        """Text completed by these tokens."""
        ids = [token_ids] if isinstance(token_ids, int) else token_ids
        vocab = self.vocab
        return self._decoder.feed(b"".join(vocab.get(i, REPLACEMENT) for i in ids))

    def flush(self) -> str:
        """Text still held back at the end of generation."""
        return self._decoder.flush()
