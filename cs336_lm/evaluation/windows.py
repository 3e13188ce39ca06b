"""The windows that score every token of a sequence exactly once, each with as much left context as the stride allows.

Token 0 has no left context and is never scored; tokens 1…n−1 are. A window feeds ``ids[start : start + length]``
and predicts ``ids[start + 1 : start + length + 1]``; its first ``skip`` predictions were scored by an earlier
window and are left out. With ``stride == context`` the windows tile the sequence (a token at offset k within its
window sees k tokens of context); with a smaller stride each window after the first scores only its last
``stride`` targets, which see at least ``context − stride`` tokens. The last window ends at the last token and
starts as early as the context allows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Inputs ``ids[start : start + length]``, targets one further; the first ``skip`` targets are not scored."""

    start: int
    length: int
    skip: int

    @property
    def scored(self) -> int:
        return self.length - self.skip


def score_windows(n_tokens: int, context: int, stride: int) -> list[Window]:
    """Windows over ``n_tokens`` ids scoring targets ``1 … n_tokens − 1`` once each, in order.

    ``score_windows(10, 4, 2)`` -> ``[Window(0, 4, 0), Window(2, 4, 2), Window(4, 4, 2), Window(5, 4, 3)]``:
    targets 1–4, then 5–6, 7–8 and 9.
    """
    if context < 1 or not 1 <= stride <= context:
        raise ValueError(f"need context >= 1 and 1 <= stride <= context, got context={context}, stride={stride}")
    windows: list[Window] = []
    next_target, start, last = 1, 0, n_tokens - 1
    while next_target <= last:
        if start + context >= last:  # the final window: ends at the last target, as much context as fits
            start = max(0, last - context)
            windows.append(Window(start, last - start, next_target - start - 1))
            break
        windows.append(Window(start, context, next_target - start - 1))
        next_target = start + context + 1
        start += stride
    return windows
