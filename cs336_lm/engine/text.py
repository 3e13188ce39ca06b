"""A request's text as its tokens arrive, with stop strings found even when they span several tokens.

``StopText`` decodes token bytes with ``TokenTextStream`` (never half a UTF-8 character) and holds back the end
of the text that could still become a stop string, so what it releases is final: the concatenation of every
release equals the text up to (not including) the first stop string, or the whole text when none occurs.

>>> vocab = {0: b"Hel", 1: b"lo\\n", 2: b"\\nBye"}
>>> t = StopText(vocab, stop=("\\n\\n",))
>>> t.feed(0), t.feed(1), t.feed(2), t.stopped
('Hel', 'lo', '', True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cs336_lm.generation.stream import TokenTextStream


class StopText:
    """Text released so far (``text``), whether a stop string has ended it (``stopped``) and which (``matched``)."""

    def __init__(self, vocab: Mapping[int, bytes], stop: Sequence[str] = ()):
        self.stream = TokenTextStream(vocab)
        self.stop = tuple(stop)
        self.text = ""  # released, final
        self.held = ""  # decoded but possibly the start of a stop string
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, token: int) -> str:
        """Add one token; return the text that became final (``""`` while it may still be part of a stop)."""
        if self.stopped:
            return ""
        return self._release(self.held + self.stream.feed(token))

    def finish(self) -> str:
        """The request ended for another reason: release what was held back (and any unfinished character)."""
        if self.stopped:
            return ""
        pending = self.held + self.stream.flush()
        self.held = ""
        self.text += pending
        return pending

    def _release(self, pending: str) -> str:
        cut = self._first_stop(pending)
        if cut is not None:
            self.stopped, self.held = True, ""
            self.matched = min((s for s in self.stop if pending.find(s) == cut), key=len)
            self.text += pending[:cut]
            return pending[:cut]
        keep = self._possible_stop_start(pending)
        out, self.held = pending[: len(pending) - keep], pending[len(pending) - keep :]
        self.text += out
        return out

    def _first_stop(self, pending: str) -> int | None:
        """Where the earliest stop string begins in ``pending`` (held text included), or None."""
        found = [i for i in (pending.find(s) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _possible_stop_start(self, pending: str) -> int:
        """Length of the longest suffix of ``pending`` that is a proper prefix of some stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(pending)), longest, -1):
                if pending.endswith(s[:n]):
                    longest = n
                    break
        return longest
