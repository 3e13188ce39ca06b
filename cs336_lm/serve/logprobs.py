"""Token log-probabilities as the server writes them: a token's text, and OpenAI's legacy ``logprobs`` object.

The engine reports a ``TokenLogprob`` per token (``cs336_lm.generation.logprobs``): its id, its log-probability
and the ids of the most likely alternatives. A protocol names tokens by text: ``token_text`` is a token's bytes
decoded as UTF-8, or — for a token that holds part of a character — ``"bytes:"`` and its bytes as ``\\xNN``
escapes (OpenAI's convention), so two such tokens never share a name. ``top_alternatives`` lists a position's
alternatives as ``(text, logprob)``, best first: what a chat answer's ``top_logprobs`` formats its own way.

``LegacyLogprobs`` builds the ``logprobs`` object of ``/v1/completions`` for one choice, piece by piece as tokens
arrive (a streamed chunk carries its own piece; ``merge`` joins pieces into the whole):

>>> vocab = {0: b"Hi", 1: b" there"}
>>> LegacyLogprobs(vocab).piece([(0, None), (1, TokenLogprob(1, -0.5, ((1, -0.5), (0, -1.0))))])
{'tokens': ['Hi', ' there'], 'token_logprobs': [None, -0.5], 'top_logprobs': [None, {' there': -0.5, 'Hi': -1.0}], \
'text_offset': [0, 2]}

``text_offset`` is where each token's text starts in the choice's ``text`` (the echoed prompt included), in
characters: a token that completes a character begun by the one before it starts where that character starts;
bytes that never become a character are one U+FFFD each, as in the text.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from typing import Any

from cs336_lm.generation.logprobs import TokenLogprob


def token_text(vocab: Mapping[int, bytes], token: int) -> str:
    """The text that names ``token``: its bytes as UTF-8, else ``"bytes:\\xNN…"``."""
    raw = vocab[token]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def top_alternatives(vocab: Mapping[int, bytes], entry: TokenLogprob) -> list[tuple[str, float]]:
    """A position's most likely tokens as ``(text, logprob)``, most likely first."""
    return [(token_text(vocab, t), logprob) for t, logprob in entry.top]


class LegacyLogprobs:
    """The ``logprobs`` object of one ``/v1/completions`` choice, built as its tokens arrive (module docstring)."""

    def __init__(self, vocab: Mapping[int, bytes]):
        self.vocab = vocab
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._offset = 0  # characters of the choice's text decoded so far

    def piece(self, tokens: Sequence[tuple[int, TokenLogprob | None]]) -> dict[str, Any]:
        """The object for the next ``tokens``: ``(id, its TokenLogprob or None)`` each (None: not scored, as the
        prompt's first token)."""
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for token, entry in tokens:
            out["tokens"].append(token_text(self.vocab, token))
            out["token_logprobs"].append(None if entry is None else entry.logprob)
            out["top_logprobs"].append(None if entry is None else dict(top_alternatives(self.vocab, entry)))
            out["text_offset"].append(self._start(self.vocab[token]))
            self._offset += len(self._decoder.decode(self.vocab[token]))
        return out

    def _start(self, raw: bytes) -> int:
        """Where a token of bytes ``raw`` starts in the text: where the character it completes starts, or — when the
        bytes held back before it are cut short by it — after their replacement characters."""
        held = self._decoder.getstate()[0]
        if held and not (raw and 0x80 <= raw[0] < 0xC0):  # ``raw`` does not continue them: they decode as U+FFFD
            return self._offset + len(held.decode("utf-8", errors="replace"))
        return self._offset


def merge(pieces: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pieces of one choice joined, in order (each list concatenated)."""
    keys = ("tokens", "token_logprobs", "top_logprobs", "text_offset")
    return {key: [value for piece in pieces for value in piece[key]] for key in keys}
