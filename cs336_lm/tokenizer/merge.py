"""The BPE merge loop: learn merges from pre-token counts, updating pair counts incrementally.

Tokens are small ints (0–255 the bytes, then one per distinct merged byte string) and each distinct
pre-token is a list of them with its count. A pair ``(x, y)`` is packed into one int ``x << shift | y``;
``pair_counts`` holds how often each pair occurs (weighted by pre-token counts) and ``where`` the
pre-tokens it occurs in. A merge rewrites only the pre-tokens listed for its pair and adjusts the counts
of the pairs around each occurrence, so a step costs time in proportion to what it changes, not to the
corpus. The most frequent pair comes off a lazy max-heap: stale entries are fixed when they surface.
"""

import gc
import heapq
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from tqdm import tqdm

_INVERT = bytes(range(255, -1, -1))
_END = "\u0100"  # sorts after every inverted byte


def descending_key(token: bytes) -> str:
    """A string whose ascending order is the descending lexicographic order of ``token``.

    Each byte ``c`` becomes ``chr(255 - c)`` and the end gets ``chr(256)``, so a prefix sorts after its
    extensions: ``descending_key(b"b") < descending_key(b"a") < descending_key(b"")``, and
    ``descending_key(b"ab") < descending_key(b"a")``. Concatenating the keys of ``a`` and ``b`` orders pairs
    ``(a, b)`` the same way (descending by ``a``, then by ``b``), because ``chr(256)`` marks where ``a`` ends.
    """
    return token.translate(_INVERT).decode("latin-1") + _END


def initial_pairs(
    words: list[bytes], counts: list[int], shift: int
) -> tuple[dict[int, int], defaultdict[int, set[int]]]:
    """Pair counts and the pair -> word index for byte words, computed with NumPy.

    ``initial_pairs([b"abab"], [3], 8)`` -> ``({0x6162: 6, 0x6261: 3}, {0x6162: {0}, 0x6261: {0}})``.
    """
    where: defaultdict[int, set[int]] = defaultdict(set)
    if not words:
        return {}, where
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    flat = np.frombuffer(b"".join(words), dtype=np.uint8)
    word_of = np.repeat(np.arange(len(words), dtype=np.int64), lengths)  # (total_bytes,)
    inside = word_of[:-1] == word_of[1:]  # the pair at i lies within one word
    pairs = ((flat[:-1].astype(np.uint16) << 8) | flat[1:])[inside]  # byte pair as one 16-bit number
    order = np.argsort(pairs, kind="stable")  # a radix sort for 16-bit keys
    pairs, wid = pairs[order], word_of[:-1][inside][order]
    starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
    sums = np.add.reduceat(np.asarray(counts, dtype=np.int64)[wid], starts)
    first = pairs[starts].astype(np.int64)
    keys = (((first >> 8) << shift) | (first & 0xFF)).tolist()
    ends = [*starts[1:].tolist(), len(pairs)]
    wid_list = wid.tolist()
    for key, lo, hi in zip(keys, starts.tolist(), ends, strict=True):
        where[key] = set(wid_list[lo:hi])
    return dict(zip(keys, sums.tolist(), strict=True)), where


def _pop_best(heap: list[tuple[int, str, int]], pair_counts: dict[int, int]) -> int | None:
    """Pop the most frequent pair (ties: greatest bytes) whose heap entry is current; None when none is left.

    Entries go stale when a pair's count drops; such an entry is pushed back with the true count.
    """
    while heap:
        neg, key, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count == -neg:
            return pair
        if count > 0:
            heapq.heappush(heap, (-count, key, pair))
    return None


def _apply_merge(
    a: int,
    b: int,
    new: int,
    shift: int,
    words: list[list[int]],
    counts: list[int],
    pair_counts: defaultdict[int, int],
    where: defaultdict[int, set[int]],
) -> defaultdict[int, list[int]]:
    """Replace every ``a b`` by ``new`` in the words holding it; adjust neighbour pairs; return grown pairs.

    Left to right and non-overlapping: ``[a, a, a]`` with ``a a -> t`` becomes ``[t, a]``. For an occurrence
    with left neighbour ``x`` and right neighbour ``y``, ``(x, a)`` and ``(b, y)`` lose the word's count and
    ``(x, new)``, ``(new, y)`` gain it; when two occurrences touch, the pair between them is handled once,
    by the right one. Returns ``{grown pair: words it now occurs in}``; the caller removes the merged pair.
    """
    grown: defaultdict[int, list[int]] = defaultdict(list)
    b_high, new_high = b << shift, new << shift
    for wi in where.pop((a << shift) | b, ()):
        w = words[wi]
        left = w.count(a)
        if left == 1:  # the common case: at most one occurrence, no overlap to mind
            i = w.index(a)
            n = len(w) - 1
            if i == n or w[i + 1] != b:
                continue  # stale index entry: an earlier merge took this pair away
            c = counts[wi]
            if i:
                x = w[i - 1] << shift
                pair_counts[x | a] -= c
                pair_counts[x | new] += c
                grown[x | new].append(wi)
            if i + 1 < n:
                y = w[i + 2]
                pair_counts[b_high | y] -= c
                pair_counts[new_high | y] += c
                grown[new_high | y].append(wi)
            w[i] = new
            del w[i + 1]
        elif left:
            _merge_all(a, b, new, shift, w, counts[wi], wi, pair_counts, grown)
    return grown


def _merge_all(
    a: int,
    b: int,
    new: int,
    shift: int,
    w: list[int],
    c: int,
    wi: int,
    pair_counts: defaultdict[int, int],
    grown: defaultdict[int, list[int]],
) -> None:
    """``_apply_merge`` for one word where ``a`` occurs more than once (several or touching occurrences)."""
    i = 0
    last = -2  # position of the previous ``new`` made in this word
    left = w.count(a)
    while left:
        i = w.index(a, i)
        left -= 1
        n = len(w)
        if i + 1 < n and w[i + 1] == b:
            if a == b:
                left -= 1
            if i:
                x = w[i - 1]
                pair_counts[((b if last == i - 1 else x) << shift) | a] -= c
                key = (x << shift) | new
                pair_counts[key] += c
                grown[key].append(wi)
            if i + 2 < n:
                y = w[i + 2]
                if not (y == a and i + 3 < n and w[i + 3] == b):
                    pair_counts[(b << shift) | y] -= c
                    key = (new << shift) | y
                    pair_counts[key] += c
                    grown[key].append(wi)
            w[i] = new
            del w[i + 1]
            last = i
        i += 1


def learn_merges(
    word_counts: Mapping[bytes, int], num_tokens: int, progress: bool | None = None
) -> list[tuple[bytes, bytes]]:
    """BPE merges for pre-tokens with counts, most frequent pair first, until they made ``num_tokens`` new tokens.

    Ties go to the lexicographically greater pair ``(bytes_a, bytes_b)``: with ``{b"ab": 1, b"cd": 1}``
    the first merge is ``(b"c", b"d")``. Two merges can make the same bytes (``ab+c`` after ``a+bc``); the
    second is kept in the list but makes no new token, and from then on both spellings are one token. Stops
    early when no pair is left (every pre-token is a single token).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small lists, sets and tuples but no cycles: collection passes would only cost time
    try:
        return _learn_merges(word_counts, num_tokens, progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _learn_merges(
    word_counts: Mapping[bytes, int], num_tokens: int, progress: bool | None
) -> list[tuple[bytes, bytes]]:
    tokens = [bytes([i]) for i in range(256)]
    token_id = {t: i for i, t in enumerate(tokens)}
    keys = [descending_key(t) for t in tokens]
    shift = (256 + num_tokens).bit_length()
    mask = (1 << shift) - 1
    words = [w for w in word_counts if len(w) > 1]
    counts = [word_counts[w] for w in words]
    initial, where = initial_pairs(words, counts, shift)
    pair_counts: defaultdict[int, int] = defaultdict(int, initial)
    word_lists = [list(w) for w in words]
    del words
    heap = [(-n, keys[p >> shift] + keys[p & mask], p) for p, n in initial.items()]
    heapq.heapify(heap)
    merges: list[tuple[bytes, bytes]] = []
    disable = None if progress is None else not progress
    with tqdm(total=num_tokens, unit="token", desc="merge", disable=disable) as bar:
        while len(tokens) < 256 + num_tokens:
            best = _pop_best(heap, pair_counts)
            if best is None:
                break
            a, b = best >> shift, best & mask
            merged = tokens[a] + tokens[b]
            merges.append((tokens[a], tokens[b]))
            new = token_id.get(merged)
            if new is None:
                new = token_id[merged] = len(tokens)
                tokens.append(merged)
                keys.append(descending_key(merged))
                bar.update()
            grown = _apply_merge(a, b, new, shift, word_lists, counts, pair_counts, where)
            del pair_counts[best]
            for p, found in grown.items():
                where[p].update(found)
                heapq.heappush(heap, (-pair_counts[p], keys[p >> shift] + keys[p & mask], p))
    return merges
