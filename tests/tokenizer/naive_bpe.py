"""A deliberately naive byte-level BPE trainer: the reference the fast one is tested against.

It recounts every pair of every pre-token before each merge and rewrites every pre-token after it, works
on tuples of ``bytes`` (so equal byte strings are one token by construction), and uses its own copy of
the GPT-2 pattern and its own special-token split. Slow (O(merges × corpus)), obviously correct.
"""

import itertools
import re
from collections import Counter

import regex

GPT2_SPLIT = regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def naive_pretoken_counts(text: str, special_tokens: list[str]) -> Counter[tuple[bytes, ...]]:
    """Pre-tokens of ``text`` as tuples of single bytes, with counts; special tokens removed."""
    if special_tokens:
        alternatives = "|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
        pieces = re.split(alternatives, text)
    else:
        pieces = [text]
    counts: Counter[tuple[bytes, ...]] = Counter()
    for piece in pieces:
        for match in GPT2_SPLIT.finditer(piece):
            counts[tuple(bytes([b]) for b in match.group().encode("utf-8"))] += 1
    return counts


def _merge_word(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    out: list[bytes] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def naive_train_bpe_text(
    text: str, vocab_size: int, special_tokens: list[str]
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train on a string: most frequent pair each step, ties to the greater ``(bytes, bytes)`` pair.

    Stops when the vocabulary has ``vocab_size`` entries or no pair is left.
    """
    specials = list(dict.fromkeys(special_tokens))
    vocab = {i: s.encode("utf-8") for i, s in enumerate(specials)}
    for b in range(256):
        vocab[len(vocab)] = bytes([b])
    words = naive_pretoken_counts(text, specials)
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, n in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        if best[0] + best[1] not in vocab.values():  # a second spelling of a known token adds no id
            vocab[len(vocab)] = best[0] + best[1]
        rewritten: Counter[tuple[bytes, ...]] = Counter()
        for word, n in words.items():
            rewritten[_merge_word(word, best) if best[0] in word else word] += n
        words = rewritten
    return vocab, merges


def naive_train_bpe(path, vocab_size: int, special_tokens: list[str]):
    """``naive_train_bpe_text`` on the UTF-8 file ``path``."""
    with open(path, encoding="utf-8", newline="") as f:
        return naive_train_bpe_text(f.read(), vocab_size, special_tokens)
