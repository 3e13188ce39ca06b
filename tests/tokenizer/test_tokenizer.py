"""``Tokenizer`` against tiktoken's GPT-2 encoding (built offline from the fixture files) and a naive reference.

tiktoken's ``get_encoding`` downloads, so the reference ``tiktoken.Encoding`` is built here from
``gpt2_vocab.json`` with its own byte table (tiktoken's rule, derived apart from ours). A second, deliberately
naive encoder (GPT-2's merge loop on byte strings) checks small hand-made vocabularies with overlapping
special tokens, where tiktoken (whose special-token regex is not longest-first) is no reference.
"""

import collections
import functools
import itertools
import json
import pickle
import tracemalloc

import numpy as np
import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_lm.errors import TokenizerError
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.tokenizer.pretokenize import GPT2_PATTERN

EOT = "<|endoftext|>"
FIXTURE_TEXTS = ["corpus.en", "tinystories_sample.txt", "address.txt", "german.txt"]


def printable_rule_table() -> dict[int, str]:
    """GPT-2's byte table by tiktoken's rule: printable non-space Latin-1 keeps its character, the rest 256+k."""
    keep = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + k) for k, b in enumerate(others)}}


@functools.cache
def gpt2_pair(vocab_path: str, merges_path: str) -> tuple[Tokenizer, tiktoken.Encoding]:
    ours = Tokenizer.from_files(vocab_path, merges_path, special_tokens=[EOT])
    to_byte = {c: b for b, c in printable_rule_table().items()}
    with open(vocab_path, encoding="utf-8") as f:
        ranks = {bytes(to_byte[c] for c in text): i for text, i in json.load(f).items() if text != EOT}
    reference = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})
    return ours, reference


@functools.cache
def gpt2_plain(tok: Tokenizer) -> Tokenizer:
    """The GPT-2 tokenizer without special tokens."""
    return Tokenizer({i: b for i, b in tok.vocab.items() if i != 50256}, tok.merges)


@pytest.fixture
def gpt2(shared_fixture):
    return gpt2_pair(str(shared_fixture("gpt2_vocab.json")), str(shared_fixture("gpt2_merges.txt")))


# ---- a naive reference for hand-made vocabularies --------------------------------------------------------------


def naive_encode(text: str, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], specials: list[str]):
    """Scan for the longest special token at each position; GPT-2's merge loop on the other pre-tokens."""
    ids_of = {b: i for i, b in sorted(vocab.items(), reverse=True)}
    rank = {pair: r for r, pair in reversed(list(enumerate(merges)))}
    ids, plain, pos = [], "", 0
    while pos < len(text):
        hit = max((s for s in specials if text.startswith(s, pos)), key=len, default=None)
        if hit is None:
            plain, pos = plain + text[pos], pos + 1
            continue
        ids += [*naive_plain(plain, ids_of, rank), ids_of[hit.encode()]]
        plain, pos = "", pos + len(hit)
    return ids + naive_plain(plain, ids_of, rank)


def naive_plain(text, ids_of, rank, shortcut=True):
    out = []
    for pretoken in regex.findall(GPT2_PATTERN, text):
        word = [bytes([b]) for b in pretoken.encode()]
        if shortcut and pretoken.encode() in ids_of:  # the whole pre-token is a token: tiktoken's (and our) shortcut
            word = [pretoken.encode()]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: rank.get(p, float("inf")))
            if best not in rank:
                break
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        out += [ids_of[w] for w in word]
    return out


SMALL_MERGES = [(b"a", b"a"), (b"aa", b"a"), (b" ", b"a"), (b"<", b"|"), (b"e", b"n"), (b"s", b"s"), (b"\n", b"\n")]
SMALL_SPECIALS = ["<|endoftext|>", "<|endoftext|><|endoftext|>", "<|s|>"]


def small_tokenizer(**kwargs) -> Tokenizer:
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in SMALL_MERGES:
        vocab[len(vocab)] = a + b
    return Tokenizer(vocab, SMALL_MERGES, SMALL_SPECIALS, **kwargs)


# ---- strategies ------------------------------------------------------------------------------------------------

PIECES = ["a", "aa", " a", "aaa", "'s", "'ll", "'", "l", "ve", "<|", "|>", EOT, "<|s|>", "end", " ", "  ", "\n", "\n\n"]
PIECES += ["\t", "\u3000", "é", "ß", "中文", "日本語", "🙂", "👍🏽", "12", "٣", "x", "?!", "\r\n", "\u00a0", "\x00"]
tricky_text = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=60), tricky_text)


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


# ---- GPT-2 equality with tiktoken ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_fixture_texts_match_tiktoken(gpt2, shared_fixture, name):
    ours, reference = gpt2
    text = shared_fixture(name).read_text(encoding="utf-8")
    ids = ours.encode(text)
    assert ids == reference.encode(text, allowed_special="all")
    assert ours.decode(ids) == text
    assert list(ours.encode_iterable(text.splitlines(keepends=True))) == ids


def test_long_text_takes_block_path(gpt2, shared_fixture):
    ours, reference = gpt2
    text = shared_fixture("corpus.en").read_text(encoding="utf-8") * 3  # > 4 blocks: encode streams internally
    assert ours.encode(text) == reference.encode(text, allowed_special="all")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_unicode_matches_tiktoken(gpt2, text):
    ours, reference = gpt2
    ids = ours.encode(text)
    assert ids == reference.encode(text, allowed_special="all")
    assert ours.decode(ids) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text, cuts=st.lists(st.integers(0, 80), max_size=8), block=st.integers(1, 12))
def test_encode_iterable_matches_encode_gpt2(gpt2, text, cuts, block):
    ours, _ = gpt2
    plain = gpt2_plain(ours)  # without special tokens nothing is held back for them: pre-token edges decide
    for tok in (ours, plain):
        assert list(tok.encode_iterable(chunked(text, cuts), block_chars=block)) == tok.encode(text)


@pytest.mark.parametrize(
    "chunks",
    [["'l", "l"], ["x'", "ve"], ["it'", "s"], ["a  ", " b"], ["a \n", "\n b"], ["a ", "b"], ["12", "34"], ["?", "!"]],
)
@pytest.mark.parametrize("block", [1, 2, 3])
def test_encode_iterable_pretoken_straddles_chunks(gpt2, chunks, block):
    """Pre-tokens whose regex match depends on what follows (contractions, whitespace runs) across a cut."""
    ours, reference = gpt2
    expected = reference.encode_ordinary("".join(chunks))
    assert list(gpt2_plain(ours).encode_iterable(chunks, block_chars=block)) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(0, 50256), max_size=30))
def test_decode_matches_tiktoken(gpt2, ids):
    ours, reference = gpt2
    assert ours.decode(ids) == reference.decode(ids, errors="replace")


@pytest.mark.parametrize("text", ["\ud800abc", "a \udfff\ud800 b", "x\ud83d", "\ud83d\ude42"])
def test_lone_surrogates_become_replacement_characters(gpt2, text):
    ours, reference = gpt2
    assert ours.encode(text) == reference.encode(text)


def test_gpt2_files_without_special_tokens(gpt2, shared_fixture):
    _, reference = gpt2
    plain = Tokenizer.from_files(shared_fixture("gpt2_vocab.json"), shared_fixture("gpt2_merges.txt"))
    assert plain.special_tokens == [] and plain.vocab_size == 50257
    assert plain.encode(f"a{EOT}b") == reference.encode_ordinary(f"a{EOT}b")


def test_gpt2_attributes(gpt2):
    ours, _ = gpt2
    assert ours.vocab_size == 50257
    assert ours.special_tokens == [EOT] and ours.special_token_ids == {EOT: 50256}
    assert ours.encode(f"Hi{EOT}") == [17250, 50256]


@pytest.mark.slow
def test_whole_token_shortcut_agrees_with_plain_bpe_on_gpt2(gpt2):
    """Every GPT-2 token that is one pre-token comes out of plain BPE (no shortcut) as that single token."""
    ours, _ = gpt2
    ids_of = {b: i for i, b in ours.vocab.items()}
    rank = {pair: r for r, pair in reversed(list(enumerate(ours.merges)))}
    checked = 0
    for token_id, token in ours.vocab.items():
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if token_id in ours.special_token_ids.values() or regex.findall(GPT2_PATTERN, text) != [text]:
            continue
        assert naive_plain(text, ids_of, rank, shortcut=False) == [token_id], text
        checked += 1
    assert checked > 40_000


def test_truncated_merges_prefix_matches_tiktoken(gpt2, shared_fixture):
    """A smaller BPE (the first 300 merges) still equals tiktoken given the same ranks."""
    full, reference = gpt2
    keep = {reference.decode_single_token_bytes(r): r for r in range(556)}
    small_ref = tiktoken.Encoding("gpt2-556", pat_str=GPT2_PATTERN, mergeable_ranks=keep, special_tokens={})
    small = Tokenizer({i: full.vocab[i] for i in range(556)}, full.merges[:300])
    text = shared_fixture("tinystories_sample.txt").read_text(encoding="utf-8")
    assert small.encode(text) == small_ref.encode_ordinary(text)


# ---- special tokens, hand-made vocabularies --------------------------------------------------------------------


def test_overlapping_special_tokens_longest_first():
    tok = small_tokenizer()
    single, double, s = (tok.special_token_ids[t] for t in SMALL_SPECIALS)
    assert (single, double, s) == (263, 264, 265)  # appended after the 256 bytes + 7 merges
    assert tok.encode(EOT * 3) == [double, single]
    assert tok.encode(f"aaa{EOT}{EOT} a<|s|>") == [257, double, 258, s]
    assert tok.decode(tok.encode(EOT * 2 + "x")) == EOT * 2 + "x"


@settings(max_examples=200, deadline=None)
@given(text=tricky_text, cuts=st.lists(st.integers(0, 120), max_size=10), block=st.integers(1, 20))
def test_small_vocab_matches_naive_and_streams(text, cuts, block):
    tok = small_tokenizer(cache_size=4)
    ids = tok.encode(text)
    assert ids == naive_encode(text, tok.vocab, SMALL_MERGES, SMALL_SPECIALS)
    assert tok.decode(ids) == text
    assert list(tok.encode_iterable(chunked(text, cuts), block_chars=block)) == ids


def stream_peak_bytes(tok: Tokenizer, n_chunks: int) -> int:
    """Peak traced memory while streaming ``n_chunks`` generated lines through ``encode_iterable``."""
    lines = (f"line {i % 97} has some words, and 'some' more<|s|>\n" for i in range(n_chunks))
    tracemalloc.start()
    try:
        collections.deque(tok.encode_iterable(lines), maxlen=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # tracemalloc slows allocation several-fold
def test_encode_iterable_memory_does_not_grow_with_input():
    tok = small_tokenizer()
    small, large = stream_peak_bytes(tok, 2_500), stream_peak_bytes(tok, 15_000)  # ~0.13 MB vs ~0.8 MB of text
    assert large < 1.5 * small and large < 1_500_000


def test_encode_iterable_is_lazy():
    pulled = 0

    def lines():
        nonlocal pulled
        for _ in range(10**7):
            pulled += 1
            yield "the cat sat. "

    first = list(itertools.islice(small_tokenizer().encode_iterable(lines()), 10))
    assert len(first) == 10 and pulled < 20_000  # about one 64K-character block, not the whole stream


NESTED_SPECIALS = ["<|s|>", "a<|s|>", "<|s|>b", "<|s|><|s|>"]


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", "b", "<|s|>", "<|", "s|>", " ", "aa", "\n"]), max_size=30).map("".join),
    cuts=st.lists(st.integers(0, 90), max_size=8),
    block=st.integers(1, 9),
)
def test_specials_that_contain_each_other(text, cuts, block):
    """Leftmost match first, then the longest: ``xa<|s|>b`` -> ``x``, ``a<|s|>``, ``b``."""
    vocab = {i: bytes([i]) for i in range(256)}
    tok = Tokenizer(vocab, [], NESTED_SPECIALS)
    ids = tok.encode(text)
    assert ids == naive_encode(text, tok.vocab, [], NESTED_SPECIALS)
    assert list(tok.encode_iterable(chunked(text, cuts), block_chars=block)) == ids


def test_special_token_split_across_chunks():
    tok = small_tokenizer()
    chunks = ["aa<|endof", "text|><|end", "oftext|>", "<", "|s|>a"]
    assert list(tok.encode_iterable(chunks, block_chars=1)) == tok.encode("".join(chunks))
    assert tok.encode("".join(chunks)).count(tok.special_token_ids[EOT * 2]) == 1


def test_no_special_tokens_means_plain_text():
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [])
    assert tok.special_tokens == [] and tok.special_token_ids == {} and tok.vocab_size == 256
    assert tok.encode(EOT) == list(EOT.encode())
    assert list(tok.encode_iterable(["<|endof", "text|>"], block_chars=1)) == list(EOT.encode())


def test_cache_stays_bounded():
    tok = small_tokenizer(cache_size=16)
    words = " ".join(f"w{i}" for i in range(500))
    assert tok.encode(words) == naive_encode(words, tok.vocab, SMALL_MERGES, SMALL_SPECIALS)
    assert len(tok._cache) <= 16


# ---- decode, errors, files -------------------------------------------------------------------------------------


def test_decode_invalid_utf8_and_numpy_ids():
    tok = small_tokenizer()
    assert tok.decode([0xE4, 0xB8]) == "\ufffd"  # a cut-off 3-byte sequence
    assert tok.decode(np.array([104, 105], dtype=np.uint16)) == "hi"
    assert tok.decode([]) == ""


@pytest.mark.parametrize("bad", [266, -1, 10**9, "a"])
def test_decode_unknown_id(bad):
    with pytest.raises(TokenizerError, match=f"token id {bad!r}"):
        small_tokenizer().decode([104, bad])


def test_constructor_rejects_inconsistent_tables():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(TokenizerError, match=r"merge 0 \(b'a', b'b'\) needs b'ab'"):
        Tokenizer(vocab, [(b"a", b"b")])
    with pytest.raises(TokenizerError, match="lacks 1 of the 256 single bytes"):
        Tokenizer({i: bytes([i]) for i in range(255)}, [])


def test_save_from_directory_round_trip(gpt2, shared_fixture, tmp_path):
    ours, _ = gpt2
    ours.save(tmp_path / "tok")
    loaded = Tokenizer.from_directory(tmp_path / "tok")
    assert loaded.vocab == ours.vocab and loaded.merges == ours.merges
    assert loaded.special_token_ids == ours.special_token_ids
    text = shared_fixture("german.txt").read_text(encoding="utf-8") + EOT + "🙂 tail"
    assert loaded.encode(text) == ours.encode(text)
    loaded.save(tmp_path / "again")
    for name in ["vocab.json", "merges.txt", "special_tokens.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "tok" / name).read_bytes()


def test_small_save_round_trip_and_pickle(tmp_path):
    tok = small_tokenizer()
    tok.save(tmp_path)
    text = f"aaa{EOT}{EOT}\n\nss<|s|>"
    assert Tokenizer.from_directory(tmp_path).encode(text) == tok.encode(text)
    assert pickle.loads(pickle.dumps(tok)).encode(text) == tok.encode(text)


def test_from_directory_errors(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer.from_directory(tmp_path / "missing")
    small_tokenizer().save(tmp_path)
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(TokenizerError, match=r"has no merges\.txt"):
        Tokenizer.from_directory(tmp_path)


def test_truncated_files_are_reported(gpt2, tmp_path):
    ours, _ = gpt2
    ours.save(tmp_path)
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "merges.txt").write_text("".join(merges[:-1000]), encoding="utf-8")  # lost lines
    with pytest.raises(TokenizerError, match="1000 tokens that no merge"):
        Tokenizer.from_directory(tmp_path)
    (tmp_path / "merges.txt").write_text("".join(merges[:-1]) + merges[-1][:2], encoding="utf-8")  # cut mid-line
    with pytest.raises(TokenizerError, match="expected two GPT-2 tokens"):
        Tokenizer.from_directory(tmp_path)
    vocab = (tmp_path / "vocab.json").read_bytes()
    (tmp_path / "vocab.json").write_bytes(vocab[: len(vocab) // 2])
    with pytest.raises(TokenizerError, match=r"malformed JSON|truncated"):
        Tokenizer.from_directory(tmp_path)
    (tmp_path / "vocab.json").write_bytes(vocab[: vocab.index(b', "', 1000)])  # cut between two entries
    with pytest.raises(TokenizerError, match="malformed JSON"):
        Tokenizer.from_directory(tmp_path)


def test_merges_with_unknown_tokens(tmp_path):
    small_tokenizer().save(tmp_path)
    with open(tmp_path / "merges.txt", "a", encoding="utf-8") as f:
        f.write("q z\n")
    with pytest.raises(TokenizerError, match=r"needs b'qz', which is not in the vocabulary"):
        Tokenizer.from_directory(tmp_path)


def test_the_chat_template_and_named_tokens_travel_with_the_files(tmp_path):
    template = "{% for m in messages %}\r\n{{ m.content }}{{ eos_token }}{% endfor %}"  # kept byte for byte
    tok = small_tokenizer(chat_template=template, named_tokens={"eos_token": EOT})
    tok.save(tmp_path / "a")
    assert (tmp_path / "a" / "chat_template.jinja").read_bytes() == template.encode()
    loaded = Tokenizer.from_directory(tmp_path / "a")
    assert (loaded.chat_template, loaded.named_tokens) == (template, {"eos_token": EOT})
    copied = pickle.loads(pickle.dumps(loaded))
    assert (copied.chat_template, copied.named_tokens) == (template, {"eos_token": EOT})
    small_tokenizer().save(tmp_path / "b")  # none: no files, nothing read
    assert not (tmp_path / "b" / "chat_template.jinja").exists()
    plain = Tokenizer.from_directory(tmp_path / "b")
    assert (plain.chat_template, plain.named_tokens) == (None, {})


def test_bad_named_tokens_are_refused(tmp_path):
    small_tokenizer().save(tmp_path)
    (tmp_path / "special_tokens_map.json").write_text('{"end_token": "x"}', encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"special_tokens_map\.json: unknown role 'end_token'"):
        Tokenizer.from_directory(tmp_path)
    (tmp_path / "special_tokens_map.json").write_text('{"eos_token": 3}', encoding="utf-8")
    with pytest.raises(TokenizerError, match="eos_token must be a non-empty string"):
        Tokenizer.from_directory(tmp_path)
