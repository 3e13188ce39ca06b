"""tiktoken as an encoding backend for our byte-level BPE: when the mapping is exact, and the conversion.

tiktoken stores a BPE as one ranked table of byte strings (``mergeable_ranks``; a token's rank is its id). A
pre-token starts as its bytes and, again and again, the adjacent pair whose *concatenation* has the lowest rank is
merged (the leftmost of equals first). Ours merges the adjacent *pair* listed earliest in ``merges``. Both split
text with the same GPT-2 regex and both take a pre-token that is itself an ordinary token straight to its id. The
two agree on every text when (``tiktoken_mismatch`` checks each, in this order, and names the first that fails):

1. **one id per byte string**: no two ids share bytes, and no special token has the bytes of an ordinary one
   (tiktoken's table maps bytes to one id; its special tokens live apart);
2. **every token from a merge**: each multi-byte ordinary token is made by some merge (tiktoken would merge into a
   token that no merge makes wherever its bytes meet; ours never does);
3. **ids follow merge order**: the merge that first makes a token gives it a higher id than every earlier merge
   gave its token, since tiktoken's priority *is* the id;
4. **each token's merge is the one tiktoken would make**: tiktoken's BPE of a token's bytes, allowed only ranks
   below the token's, ends in exactly the two parts of the merge that first made it. Then, by induction on the
   merges performed, a span that tiktoken merges into a token ``t`` has gone through the states of tiktoken run on
   ``t`` alone, so the pair it joins is ``t``'s own merge: tiktoken only ever makes our merges, in our order;
5. **no special token is a prefix of another**: tiktoken tries its special tokens in hash order, ours longest first.

A later merge that makes bytes some earlier merge already made (``(a, bc)`` after ``(ab, c)``; ``train_bpe`` can
learn such pairs) is harmless given 4: whenever its two parts sit side by side, tiktoken — which ranks them as
early as the token — has a lower-ranked pair to join first, so ours, which ranks them later still, does too. The
tests check this on random small vocabularies, over every word of up to six letters.

Tokenizers trained by ``train_bpe`` meet 1 and 3 by construction (special tokens first, the 256 bytes, then one id
per merge) and usually 2 and 4; GPT-2's files meet all five. The checks take about 0.2 s for GPT-2's 50,000 merges,
so ``cached_mismatch`` remembers each vocabulary's verdict (a small JSON file per vocabulary under
``cache_directory()``, keyed by a SHA-256 of its tokens, merges and special tokens, which takes ~20 ms) and
everything that needs the verdict asks it. ``select_backend`` resolves ``--backend auto|ours|tiktoken`` for
``lm-tokenize``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cs336_lm.errors import TokenizerError, WriteError
from cs336_lm.fileio import atomic_write, cache_directory
from cs336_lm.tokenizer.pretokenize import GPT2_PATTERN

if TYPE_CHECKING:
    from cs336_lm.tokenizer.tokenizer import Tokenizer

BACKENDS = ("auto", "ours", "tiktoken")
NOT_INSTALLED = "tiktoken is not installed (pip install tiktoken)"
CHECK_VERSION = 1  # part of every remembered verdict's key: a change to the checks must bump it


def mergeable_ranks(tok: Tokenizer) -> dict[bytes, int]:
    """tiktoken's table for ``tok``: the bytes of every ordinary (non-special) token -> its id."""
    ordinary = dict(tok.vocab)
    for i in tok.special_token_ids.values():
        ordinary.pop(i, None)
    return dict(zip(ordinary.values(), ordinary.keys(), strict=True))


def tiktoken_bpe(ranks: dict[bytes, int], data: bytes, max_rank: int | None = None) -> list[bytes]:
    """tiktoken's merge loop on ``data``, using only ranks below ``max_rank``: repeatedly join the adjacent pair
    whose concatenation ranks lowest, the leftmost of equals. ``{b"ab": 0, b"bc": 1}``, ``b"abc"`` -> ``[b"ab", b"c"]``.
    """
    parts = [data[i : i + 1] for i in range(len(data))]
    limit = max_rank if max_rank is not None else float("inf")
    while len(parts) > 1:
        best, where = limit, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best:
                best, where = rank, i
        if where < 0:
            break
        parts[where : where + 2] = [parts[where] + parts[where + 1]]
    return parts


def tiktoken_mismatch(tok: Tokenizer) -> str | None:
    """Why tiktoken could encode some text differently from ``tok`` (the first failed condition of the module
    docstring), or None when the mapping is exact."""
    return _shared_bytes(tok) or _merge_problem(tok) or _special_prefix(tok)


def cached_mismatch(tok: Tokenizer) -> str | None:
    """``tiktoken_mismatch(tok)``, remembered: the verdict for a vocabulary already checked is read back from the
    cache directory instead of computed again. A cache that cannot be read, parsed or written is passed over."""
    path = cache_directory() / "tiktoken-check" / f"{fingerprint(tok)}.json"
    with contextlib.suppress(OSError, ValueError, LookupError, TypeError):  # missing or damaged: check again
        reason = json.loads(path.read_text(encoding="utf-8"))["reason"]
        if reason is None or isinstance(reason, str):
            return reason
    reason = tiktoken_mismatch(tok)
    with contextlib.suppress(OSError, WriteError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump({"reason": reason, "vocab_size": tok.vocab_size, "merges": len(tok.merges)}, f)
    return reason


def fingerprint(tok: Tokenizer) -> str:
    """SHA-256 (hex) of what the verdict depends on: every id with its bytes, the merges in order, the special
    tokens with their ids, and ``CHECK_VERSION``. Every list of byte strings is hashed as its count, its lengths
    and then its contents, so no two tokenizers give the same stream."""
    h = hashlib.sha256(f"cs336_lm tiktoken check {CHECK_VERSION}\n".encode())
    ids = sorted(tok.vocab)
    specials = sorted(tok.special_token_ids.items())
    for numbers, strings in (
        (ids, [tok.vocab[i] for i in ids]),
        ((), [a for a, _ in tok.merges]),
        ((), [b for _, b in tok.merges]),
        ([i for _, i in specials], [token.encode("utf-8") for token, _ in specials]),
    ):
        h.update(array("q", [len(strings), *numbers, *map(len, strings)]).tobytes())
        h.update(b"".join(strings))
    return h.hexdigest()


def _shared_bytes(tok: Tokenizer) -> str | None:
    """Condition 1: one id per byte string."""
    seen: dict[bytes, int] = {}
    for i in sorted(tok.vocab):
        data = tok.vocab[i]
        if data in seen:
            return f"ids {seen[data]} and {i} both stand for {data!r}; tiktoken maps each byte string to one id"
        seen[data] = i
    ordinary = set(tok._byte_ids) | set(tok._merged_ids)
    for token, i in tok.special_token_ids.items():
        if i in ordinary:
            return f"special token {token!r} (id {i}) has the bytes of an ordinary token, which BPE also produces"
    return None


def _merge_problem(tok: Tokenizer) -> str | None:
    """Conditions 2–4: every token from a merge, ids in merge order, each token's merge the one tiktoken makes.

    Condition 4 is checked in one pass over the merges, in order, without running tiktoken's loop on every token
    (``tiktoken_bpe``, the reference the tests compare with, takes twice as long). Once the earlier tokens pass, a
    span that tiktoken builds into ``a`` evolves as tiktoken run on ``a`` alone, so ``a + b`` ends as ``[a, b]``
    unless, at some moment, the last part of ``a``'s span and the first part of ``b``'s join into a token ranked
    below ``a + b`` before either part changes. Each token keeps its *edges* — the last (and the first) part of its
    span over time, each with the rank at which it appears, flattened: ``(part, rank, part, rank, …)`` — and the
    check walks ``a``'s last parts against ``b``'s first parts in rank order.
    """
    ranks = mergeable_ranks(tok)
    last: dict[bytes, tuple] = {bytes([b]): (bytes([b]), -1) for b in range(256)}  # token -> its last parts
    first: dict[bytes, tuple] = dict(last)  # token -> its first parts
    previous = -1
    rank_of = ranks.get
    for r, (a, b) in enumerate(tok.merges):
        token = a + b
        if token in last:
            continue  # made again by a later merge: harmless once the first merge passes (module docstring)
        rank = rank_of(token)
        if rank is None:
            return f"merge {r} ({a!r}, {b!r}) makes {token!r}, which is not an ordinary token of the vocabulary"
        if rank <= previous:
            return (
                f"ids do not follow merge order: merge {r} makes id {rank} after an earlier merge made id {previous}; "
                "tiktoken's priority is the id"
            )
        previous = rank
        left, right = last.get(a), first.get(b)
        if left is None or right is None or _joined_across(left, right, rank, rank_of):
            parts = tiktoken_bpe(ranks, token, max_rank=rank)
            return (
                f"merge {r} joins ({a!r}, {b!r}) but tiktoken, ranking by id, builds {token!r} from {parts}; "
                "the two may split some texts differently"
            )
        last[token] = (*last[b], token, rank)
        first[token] = (*first[a], token, rank)
    orphan = next((data for data in ranks if len(data) > 1 and data not in last), None)
    if orphan is not None:
        return f"token {orphan!r} (id {ranks[orphan]}) comes from no merge; tiktoken would merge into it, ours never"
    return None


def _joined_across(left: tuple, right: tuple, rank: int, rank_of: Callable[[bytes], int | None]) -> bool:
    """Whether tiktoken, building ``a + b`` (of ``rank``), joins a part of ``a`` to a part of ``b`` on the way.

    ``left`` holds ``a``'s last parts, ``right`` ``b``'s first parts, as ``(part, rank it appears at, …)``. While the
    pair ``(x, y)`` at the seam stands, it is joined first if ``x + y`` ranks below ``rank`` and below the merge
    that changes ``x`` or ``y`` next (on a tie the leftmost merge wins: the one changing ``x`` goes before the seam,
    the seam before the one changing ``y``).
    """
    i = j = 0
    end_left, end_right = len(left) - 2, len(right) - 2
    while i < end_left or j < end_right:
        seam = rank_of(left[i] + right[j])
        if j == end_right or (i < end_left and left[i + 3] <= right[j + 3]):  # x changes next
            if seam is not None and seam < rank and seam < left[i + 3]:
                return True
            i += 2
        else:  # y changes next
            if seam is not None and seam < rank and seam <= right[j + 3]:
                return True
            j += 2
    return False


def _special_prefix(tok: Tokenizer) -> str | None:
    """Condition 5: no special token is a prefix of another."""
    specials = sorted(tok.special_tokens, key=len)
    for i, short in enumerate(specials):
        longer = next((s for s in specials[i + 1 :] if s.startswith(short)), None)
        if longer is not None:
            return (
                f"special token {short!r} is a prefix of {longer!r}; tiktoken tries special tokens in arbitrary "
                "order, ours longest first"
            )
    return None


def to_tiktoken(tok: Tokenizer, name: str = "cs336_lm") -> Any:
    """A ``tiktoken.Encoding`` with ``tok``'s ids (``encode(text, allowed_special="all")`` equals ``tok.encode``);
    ``TokenizerError`` naming the reason when tiktoken is missing or the mapping would not be exact."""
    try:
        import tiktoken
    except ImportError:
        raise TokenizerError(f"cannot build a tiktoken encoding: {NOT_INSTALLED}") from None
    reason = cached_mismatch(tok)
    if reason is not None:
        raise TokenizerError(f"this tokenizer does not map exactly onto tiktoken: {reason}")
    return _encoding(tiktoken, tok, name)


def _encoding(tiktoken: Any, tok: Tokenizer, name: str) -> Any:
    special = dict(tok.special_token_ids)
    return tiktoken.Encoding(name, pat_str=GPT2_PATTERN, mergeable_ranks=mergeable_ranks(tok), special_tokens=special)


@dataclass(frozen=True)
class Backend:
    """The encoder ``select_backend`` chose: ``name`` is ``ours`` or ``tiktoken`` (then ``encoding`` is set);
    ``reason`` says why ``auto`` chose ours (empty otherwise); ``verified`` is False for a tiktoken encoding whose
    exactness is still to be checked (``check_in_background``)."""

    name: str
    encoding: Any = None
    reason: str = ""
    verified: bool = True


def select_backend(tok: Tokenizer, choice: str = "auto", *, verify: bool = True) -> Backend:
    """``ours``; ``tiktoken`` (an error when it is missing or not exact); or ``auto``: tiktoken when it is installed
    and exact for this vocabulary, else ours with the reason. With ``verify=False`` a tiktoken encoding comes back
    unverified, for the caller to check while it encodes (``lm-tokenize`` does, so the check costs no wall time)."""
    if choice not in BACKENDS:
        raise TokenizerError(f"unknown tokenizer backend {choice!r}; choose one of {', '.join(BACKENDS)}")
    if choice == "ours":
        return Backend("ours")
    try:
        import tiktoken
    except ImportError:
        if choice == "tiktoken":
            raise TokenizerError(f"cannot build a tiktoken encoding: {NOT_INSTALLED}") from None
        return Backend("ours", reason=NOT_INSTALLED)
    if not verify:
        return Backend("tiktoken", _encoding(tiktoken, tok, "cs336_lm"), verified=False)
    if choice == "tiktoken":
        return Backend("tiktoken", to_tiktoken(tok))
    reason = cached_mismatch(tok)
    if reason is not None:
        return Backend("ours", reason=reason)
    return Backend("tiktoken", _encoding(tiktoken, tok, "cs336_lm"))


class BackgroundCheck:
    """``cached_mismatch(tok)`` on a thread, so the check runs beside the encoding. ``start`` it (after forking
    any worker processes), then ``result()`` waits for the reason."""

    def __init__(self, tok: Tokenizer):
        self._tok = tok
        self._outcome: tuple[str | None, BaseException | None] = (None, None)
        self._thread = threading.Thread(target=self._run, name="tiktoken-check", daemon=True)

    def _run(self) -> None:
        try:
            self._outcome = (cached_mismatch(self._tok), None)
        except BaseException as e:  # handed to the caller by result()
            self._outcome = (None, e)

    def start(self) -> None:
        self._thread.start()

    def result(self) -> str | None:
        """Why tiktoken is not exact for this tokenizer, or None; re-raises what the check raised."""
        self._thread.join()
        reason, error = self._outcome
        if error is not None:
            raise error
        return reason
