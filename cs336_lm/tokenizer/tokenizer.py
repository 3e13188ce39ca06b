"""The byte-level BPE ``Tokenizer``: encode text to ids, decode ids to text, stream large inputs, load and save.

Encoding follows GPT-2 (and gives the same ids as tiktoken's GPT-2 encoding): the text is split on the
special tokens (longest first; each special becomes one id), the rest is cut into pre-tokens by the GPT-2
regex, and each pre-token's UTF-8 bytes are merged by rank — repeatedly merge every occurrence of the
lowest-ranked adjacent pair present, until no pair is a merge. A pre-token that is itself a vocabulary
entry maps straight to that id (tiktoken's rule too). Pre-token -> ids results are cached; on a cache hit
no per-byte Python work runs: the lookup and the list extension happen inside C (``map`` over a ``dict``
with ``__missing__``). The cache is bounded (``cache_size`` entries, cleared when full), so memory stays
flat on a multi-GB stream.
"""

import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, pairwise, repeat
from pathlib import Path

from cs336_lm.errors import TokenizerError
from cs336_lm.tokenizer import files
from cs336_lm.tokenizer.pretokenize import PRETOKEN_RE, special_token_regex

DEFAULT_CACHE_SIZE = 1 << 18  # pre-tokens; about 60 MB when full with English words
STREAM_BLOCK_CHARS = 1 << 16  # encode_iterable gathers small chunks (e.g. lines) into blocks this large


_NO_MERGE = 1 << 62  # the rank of a pair that is not a merge


class _PretokenCache(dict):
    """``cache[pretoken] -> ids``: a dict that computes and stores a missing entry, cleared when it grows full."""

    def __init__(self, compute, max_entries: int):
        super().__init__()
        self._compute = compute
        self._max_entries = max(1, max_entries)

    def __missing__(self, pretoken: str) -> tuple[int, ...]:
        ids = self._compute(pretoken)
        if len(self) >= self._max_entries:
            self.clear()
        self[pretoken] = ids
        return ids


class Tokenizer:
    """Byte-level BPE tokenizer over ``vocab`` (id -> bytes) and ``merges`` (pairs of bytes, in rank order).

    Special tokens missing from ``vocab`` are appended with the next free ids, in the order given.
    ``vocab_size`` is ``max id + 1`` (the number of rows an embedding table needs). A chat model's tokenizer also
    carries its ``chat_template`` (Jinja2 source, rendered by ``cs336_lm.generation.chat_template``) and
    ``named_tokens``, the special tokens by role (``{"eos_token": "<|im_end|>"}``); both travel with ``save``.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[str] | None = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        chat_template: str | None = None,
        named_tokens: dict[str, str] | None = None,
    ):
        self.chat_template = chat_template
        self.named_tokens: dict[str, str] = files.check_named_tokens(named_tokens or {}, "named_tokens")
        self.vocab: dict[int, bytes] = {int(i): bytes(b) for i, b in vocab.items()}
        self.merges: list[tuple[bytes, bytes]] = [(bytes(a), bytes(b)) for a, b in merges]
        self.special_tokens: list[str] = list(dict.fromkeys(special_tokens or ()))
        if any(not isinstance(t, str) or not t for t in self.special_tokens):
            raise TokenizerError(f"special tokens must be non-empty strings, got {self.special_tokens!r}")
        next_id = max(self.vocab, default=-1) + 1
        self._token_ids: dict[bytes, int] = {}
        for i in sorted(self.vocab, reverse=True):  # the lowest id wins when two ids share bytes
            self._token_ids[self.vocab[i]] = i
        for token in self.special_tokens:
            data = token.encode("utf-8")
            if data not in self._token_ids:
                self.vocab[next_id] = data
                self._token_ids[data] = next_id
                next_id += 1
        self.special_token_ids: dict[str, int] = {t: self._token_ids[t.encode("utf-8")] for t in self.special_tokens}
        self.vocab_size: int = max(self.vocab, default=-1) + 1
        self._special_ids = frozenset(self.special_token_ids.values())  # never produced from ordinary text
        self._byte_ids, self._pair_ranks, self._merged_ids = self._build_merge_table()
        self._special_re = special_token_regex(self.special_tokens)
        self._max_special_len = max((len(t) for t in self.special_tokens), default=0)
        self._cache_size = cache_size
        self._cache = _PretokenCache(self._encode_pretoken, cache_size)

    def _build_merge_table(self) -> tuple[list[int], dict[tuple[int, int], int], list[int]]:
        """Byte -> id for the 256 bytes, ``(left id, right id) -> rank`` and ``rank -> merged id`` for the merges.

        When a pair appears twice in ``merges`` its first (lowest) rank counts.
        """
        missing = [b for b in range(256) if bytes([b]) not in self._token_ids]
        if missing:
            raise TokenizerError(f"vocabulary lacks {len(missing)} of the 256 single bytes (first: 0x{missing[0]:02x})")
        byte_ids = [self._token_ids[bytes([b])] for b in range(256)]
        ranks: dict[tuple[int, int], int] = {}
        merged_ids: list[int] = []
        for rank, (a, b) in enumerate(self.merges):
            left, right, merged = (self._token_ids.get(t) for t in (a, b, a + b))
            if left is None or right is None or merged is None:
                unknown = next(t for t in (a, b, a + b) if t not in self._token_ids)
                raise TokenizerError(f"merge {rank} ({a!r}, {b!r}) needs {unknown!r}, which is not in the vocabulary")
            ranks.setdefault((left, right), rank)
            merged_ids.append(merged)
        return byte_ids, ranks, merged_ids

    # ---- files ---------------------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_path: str | os.PathLike,
        merges_path: str | os.PathLike,
        special_tokens: Sequence[str] | None = None,
        **kwargs,
    ) -> "Tokenizer":
        """Load GPT-2-format ``vocab.json`` and ``merges.txt`` (GPT-2's own files load as they are)."""
        vocab = files.read_vocab(vocab_path, special_tokens or ())
        merges = files.read_merges(merges_path)
        return cls(vocab, merges, special_tokens, **kwargs)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, **kwargs) -> "Tokenizer":
        """Load a directory written by :meth:`save`: ``vocab.json``, ``merges.txt``, ``special_tokens.json``
        (and ``chat_template.jinja``, ``special_tokens_map.json`` where present).

        ``special_tokens.json`` may be absent (no special tokens); the other two must exist. Unlike
        :meth:`from_files` (which accepts GPT-2-style extra tokens), every multi-byte token that is not special
        must come from a merge, which catches a truncated ``merges.txt``.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerError(f"tokenizer directory {directory} does not exist")
        for name in (files.VOCAB_FILE, files.MERGES_FILE):
            if not (directory / name).is_file():
                raise TokenizerError(f"tokenizer directory {directory} has no {name}")
        specials_path = directory / files.SPECIAL_TOKENS_FILE
        specials = files.read_special_tokens(specials_path) if specials_path.exists() else []
        vocab_path, merges_path = directory / files.VOCAB_FILE, directory / files.MERGES_FILE
        vocab = files.read_vocab(vocab_path, specials)
        merges = files.read_merges(merges_path)
        files.check_merges_cover_vocab(vocab, merges, specials, vocab_path, merges_path)
        template, named = files.read_chat_files(directory)
        return cls(vocab, merges, specials, chat_template=template, named_tokens=named, **kwargs)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.json``, ``merges.txt`` and ``special_tokens.json`` into ``directory`` (each atomically), and
        the chat template and named tokens when the tokenizer has them."""
        return files.write_tokenizer_files(
            directory, self.vocab, self.merges, self.special_tokens, self.chat_template, self.named_tokens
        )

    def __getstate__(self):  # pickled for worker processes: rebuild the tables there rather than ship them
        return {"vocab": self.vocab, "merges": self.merges, "specials": self.special_tokens, "cache": self._cache_size,
                "chat_template": self.chat_template, "named_tokens": self.named_tokens}  # fmt: skip

    def __setstate__(self, state):
        chat = {"chat_template": state.get("chat_template"), "named_tokens": state.get("named_tokens")}
        Tokenizer.__init__(self, state["vocab"], state["merges"], state["specials"], cache_size=state["cache"], **chat)

    # ---- encoding ------------------------------------------------------------------------------------------

    def _encode_pretoken(self, pretoken: str) -> tuple[int, ...]:
        """BPE of one pre-token's bytes: merge the lowest-ranked adjacent pair until no pair is a merge.

        With merges ``[(l,o), (e,r), (lo,w)]``, ``"lower"``: ``l o w e r`` -> ``lo w e r`` -> ``lo w er`` ->
        ``low er``. Every occurrence of the chosen pair is merged, left to right (``a a a`` with ``(a,a)`` ->
        ``aa a``). A pre-token that is a (non-special) vocabulary entry is that one id.
        """
        try:
            data = pretoken.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates become U+FFFD, as in tiktoken (same regex class, same cuts)
            data = pretoken.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
        whole = self._token_ids.get(data)
        if whole is not None and whole not in self._special_ids:
            return (whole,)
        return self.bpe(data)

    def bpe(self, data: bytes) -> tuple[int, ...]:
        """The merge loop alone, on raw bytes (no whole-token shortcut, no special tokens): with merges
        ``[(a,b), (ab,c)]``, ``bpe(b"abcab")`` -> ids of ``abc ab``. ``encode`` runs it on each pre-token that is
        not itself a vocabulary entry."""
        ids = [self._byte_ids[b] for b in data]
        rank_of = self._pair_ranks.get
        ranks = list(map(rank_of, pairwise(ids), repeat(_NO_MERGE)))  # ranks[i]: rank of (ids[i], ids[i+1])
        while ranks:
            best = min(ranks)
            if best == _NO_MERGE:
                break
            merged = self._merged_ids[best]
            i = ranks.index(best)
            more = ranks.count(best) > 1
            while True:  # merge every occurrence, left to right; only the neighbouring ranks change
                ids[i : i + 2] = [merged]
                del ranks[i]
                if i > 0:
                    ranks[i - 1] = rank_of((ids[i - 1], merged), _NO_MERGE)
                if i < len(ranks):
                    ranks[i] = rank_of((merged, ids[i + 1]), _NO_MERGE)
                if not more or best not in ranks:
                    break
                i = ranks.index(best, i + 1)
        return tuple(ids)

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        """Append the ids of ``text`` (which holds no special token) to ``out``."""
        self._encode_pretokens(PRETOKEN_RE.findall(text), out)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: ``"Hi<|endoftext|>"`` -> ``[17250, 50256]`` with GPT-2's files.

        Long texts go through the streaming path in blocks, so the pre-token lists stay small.
        """
        if len(text) <= 4 * STREAM_BLOCK_CHARS:
            return self._encode_whole(text)
        ids: list[int] = []
        for block_ids in self._encode_blocks([text]):
            ids.extend(block_ids)
        return ids

    def encode_iterable(self, iterable: Iterable[str], *, block_chars: int = STREAM_BLOCK_CHARS) -> Iterator[int]:
        """Lazily yield the ids of ``"".join(iterable)``, holding only a bounded tail of text between chunks.

        Chunks are gathered (or cut) into blocks of ~``block_chars``; each block is encoded up to its
        last *safe* point — beyond the reach of any special token still incomplete at the block's end, and
        before the first pre-token whose regex match could change once more text arrives — and the rest is
        carried into the next block. The ids equal ``encode("".join(iterable))``.
        """
        return chain.from_iterable(self._encode_blocks(iterable, block_chars))

    def _encode_whole(self, text: str) -> list[int]:
        """Ids of a complete text: split on special tokens, then BPE on the ordinary parts."""
        ids: list[int] = []
        if self._special_re is None:
            self._encode_ordinary(text, ids)
            return ids
        parts = self._special_re.split(text)  # [ordinary, special, ordinary, special, …, ordinary]
        for k, part in enumerate(parts):
            if k % 2:
                ids.append(self.special_token_ids[part])
            elif part:
                self._encode_ordinary(part, ids)
        return ids

    def _encode_blocks(self, chunks: Iterable[str], block_chars: int = STREAM_BLOCK_CHARS) -> Iterator[list[int]]:
        """The ids of ``"".join(chunks)`` as a sequence of lists, one per block of ~``block_chars`` characters."""
        block_chars = max(1, block_chars)
        pending: list[str] = []
        pending_len = 0
        carry = ""
        for chunk in chunks:
            for start in range(0, len(chunk), block_chars):
                piece = chunk if len(chunk) <= block_chars else chunk[start : start + block_chars]
                pending.append(piece)
                pending_len += len(piece)
                if pending_len >= block_chars:
                    ids, carry = self._encode_prefix(carry + "".join(pending))
                    pending, pending_len = [], 0
                    yield ids
        yield self._encode_whole(carry + "".join(pending))

    def _encode_prefix(self, buf: str) -> tuple[list[int], str]:
        """Encode the longest prefix of ``buf`` whose ids cannot change when text is appended; return the rest.

        Special tokens are matched left to right, longest first; a match decision at position ``q`` reads at
        most ``q + max_special_len - 1``, so decisions before ``limit = len - max_special_len + 1`` are final.
        """
        limit = len(buf) - max(self._max_special_len - 1, 0)
        ids: list[int] = []
        start = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(buf):
                if m.start() >= limit:
                    break
                if m.start() > start:
                    self._encode_ordinary(buf[start : m.start()], ids)
                ids.append(self.special_token_ids[m.group()])
                start = m.end()
        if start >= limit:
            return ids, buf[start:]
        pretokens = PRETOKEN_RE.findall(buf, start, limit)
        keep = _unstable_suffix(pretokens, limit - start)
        self._encode_pretokens(pretokens[: len(pretokens) - keep], ids)
        tail = sum(len(p) for p in pretokens[len(pretokens) - keep :])
        return ids, buf[limit - tail :]

    def _encode_pretokens(self, pretokens: list[str], out: list[int]) -> None:
        """Append the cached ids of each pre-token to ``out``; hits never leave C."""
        out.extend(chain.from_iterable(map(self._cache.__getitem__, pretokens)))

    # ---- decoding ------------------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: their bytes joined and decoded as UTF-8, invalid sequences becoming U+FFFD."""
        vocab = self.vocab
        ids = list(ids)
        try:
            data = b"".join(map(vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not _is_known(vocab, i))
            raise TokenizerError(f"cannot decode token id {bad!r}: unknown to this tokenizer") from None
        return data.decode("utf-8", errors="replace")

    # ---- other backends ------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, specials={self.special_tokens})"


def _is_known(vocab: dict[int, bytes], token_id) -> bool:
    try:
        return token_id in vocab
    except TypeError:
        return False


def _unstable_suffix(pretokens: list[str], length: int) -> int:
    """How many trailing pre-tokens of a text of ``length`` characters might change when text is appended.

    A GPT-2 regex match starting at ``s`` and ending at ``e`` reads at most the characters up to index
    ``max(s + 2, e + 1)`` (contractions look 3 characters ahead; whitespace runs look one past the match).
    It is final when all of those exist: ``s + 3 <= length`` and ``e + 2 <= length``. One more character of
    margin is kept on both.
    """
    keep, end = 0, length
    for p in reversed(pretokens):
        start = end - len(p)
        if start + 4 <= length and end + 3 <= length:
            break
        keep += 1
        end = start
    return keep
