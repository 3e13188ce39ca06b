"""``Tokenizer.to_tiktoken``: exact where the module says it is, refused (for a real reason) where it is not.

Ours stays the reference. Identity is checked on GPT-2's files and on tokenizers trained here from the fixtures,
with special tokens in the text, and on hypothesis text. Each refusal comes with a hand-made vocabulary on which an
unchecked tiktoken encoding really does split some text differently, so no refusal is mere caution. A property
test draws random merge lists: whenever the conversion is accepted, tiktoken and ours agree on random text.
"""

import functools
import itertools
import sys

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_lm.errors import TokenizerError
from cs336_lm.tokenizer import Tokenizer, tiktoken_backend, to_tiktoken, train_bpe
from cs336_lm.tokenizer.pretokenize import GPT2_PATTERN
from cs336_lm.tokenizer.tiktoken_backend import (
    NOT_INSTALLED,
    cached_mismatch,
    fingerprint,
    mergeable_ranks,
    select_backend,
    tiktoken_bpe,
    tiktoken_mismatch,
)

EOT = "<|endoftext|>"
SPECIALS = [EOT, "<|pad|>"]
FIXTURE_TEXTS = ["corpus.en", "tinystories_sample.txt", "address.txt", "german.txt"]


def byte_vocab() -> dict[int, bytes]:
    return {i: bytes([i]) for i in range(256)}


def hand_made(merges: list[tuple[bytes, bytes]], ids: dict[bytes, int] | None = None, specials=()) -> Tokenizer:
    """256 bytes, then each merge's result at the next id (or at ``ids[result]``)."""
    vocab = byte_vocab()
    for a, b in merges:
        if a + b not in vocab.values():
            vocab[(ids or {}).get(a + b, len(vocab))] = a + b
    return Tokenizer(vocab, merges, list(specials))


def unchecked(tok: Tokenizer) -> tiktoken.Encoding:
    """The tiktoken encoding the conversion would build, without its checks."""
    return tiktoken.Encoding("unchecked", pat_str=GPT2_PATTERN, mergeable_ranks=mergeable_ranks(tok), special_tokens={})


@functools.cache
def gpt2(vocab: str, merges: str) -> Tokenizer:
    return Tokenizer.from_files(vocab, merges, [EOT])


@functools.cache
def trained(path: str, vocab_size: int) -> Tokenizer:
    vocab, merges = train_bpe(path, vocab_size, SPECIALS)
    return Tokenizer(vocab, merges, SPECIALS)


@functools.cache
def encoding(tok: Tokenizer) -> tiktoken.Encoding:
    """``to_tiktoken(tok)``, once per tokenizer (the checks take ~0.5 s for GPT-2)."""
    return to_tiktoken(tok)


@pytest.fixture
def gpt2_tok(shared_fixture) -> Tokenizer:
    return gpt2(str(shared_fixture("gpt2_vocab.json")), str(shared_fixture("gpt2_merges.txt")))


@pytest.fixture
def corpus_tok(shared_fixture) -> Tokenizer:
    return trained(str(shared_fixture("corpus.en")), 1200)


# ---- exact conversions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_gpt2_fixtures_identical(gpt2_tok, shared_fixture, name):
    text = shared_fixture(name).read_text(encoding="utf-8")
    text = f"{EOT}{text}{EOT}{EOT}x{text[:500]}"
    enc = to_tiktoken(gpt2_tok)
    assert enc.encode(text, allowed_special="all") == gpt2_tok.encode(text)
    assert enc.encode_to_numpy(text, allowed_special="all").tolist() == gpt2_tok.encode(text)


@pytest.mark.parametrize("corpus", ["corpus.en", "tinystories_sample.txt"])
@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_trained_tokenizers_identical(shared_fixture, corpus, name):
    tok = trained(str(shared_fixture(corpus)), 1200)
    assert tiktoken_mismatch(tok) is None
    text = shared_fixture(name).read_text(encoding="utf-8")
    text = text[: len(text) // 2] + "<|pad|>" + EOT + text[len(text) // 2 :] + "<|pad|>"
    assert to_tiktoken(tok).encode(text, allowed_special="all") == tok.encode(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=80)
    | st.lists(st.sampled_from(["a", " the", "\n", EOT, "<|pad|>", "'s", "日本", "🙂", "  "])).map("".join)
)
def test_hypothesis_text_identical(corpus_tok, gpt2_tok, text):
    for tok in (corpus_tok, gpt2_tok):
        enc = encoding(tok)
        assert enc.encode(text, allowed_special="all") == tok.encode(text)
        assert enc.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_special_token_ids_are_ours(corpus_tok):
    enc = to_tiktoken(corpus_tok)
    assert enc.encode("<|pad|>", allowed_special="all") == [corpus_tok.special_token_ids["<|pad|>"]]
    assert enc.encode(EOT, allowed_special="all") == [0]


# ---- refusals, each for a real difference ---------------------------------------------------------------------


def refused(tok: Tokenizer, reason: str, alphabet: str | None = "abcd") -> None:
    """``tok`` is refused for ``reason``; with an ``alphabet``, some word of up to 5 of its letters really is split
    differently by the unchecked conversion."""
    found = tiktoken_mismatch(tok)
    assert found is not None and reason in found, found
    with pytest.raises(TokenizerError, match="does not map exactly onto tiktoken"):
        to_tiktoken(tok)
    if alphabet is not None:
        enc = unchecked(tok)
        words = ("".join(w) for n in range(2, 6) for w in itertools.product(alphabet, repeat=n))
        assert any(enc.encode(w) != tok.encode(w) for w in words)


def test_accepts_a_merge_whose_bytes_already_exist():
    # (ab, c) makes abc, then (c, d), then (a, bc) makes abc again: ours ranks (a, bc) after (c, d), tiktoken before,
    # but [a, bc] never sits side by side at its turn (a joins b first), so every text splits alike
    tok = hand_made([(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"c", b"d"), (b"a", b"bc")])
    assert tiktoken_mismatch(tok) is None
    enc = to_tiktoken(tok)
    words = ("".join(w) for n in range(1, 8) for w in itertools.product("abcd", repeat=n))
    assert all(enc.encode(w) == tok.encode(w) for w in words)


def test_refuses_ids_out_of_merge_order():
    tok = hand_made([(b"a", b"b"), (b"b", b"c")], ids={b"ab": 257, b"bc": 256})
    refused(tok, "ids do not follow merge order")


def test_refuses_a_merge_tiktoken_would_build_otherwise():
    tok = hand_made([(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])  # tiktoken builds abc as a + bc
    refused(tok, "builds b'abc' from [b'a', b'bc']")


def test_refuses_a_token_no_merge_makes():
    tok = Tokenizer({**byte_vocab(), 256: b"ab"}, [])
    refused(tok, "comes from no merge")


def test_refuses_shared_bytes():
    tok = Tokenizer({**byte_vocab(), 256: b"a"}, [])
    refused(tok, "ids 97 and 256 both stand for b'a'", alphabet=None)


def test_refuses_a_special_token_with_ordinary_bytes():
    tok = hand_made([(b"a", b"b")], specials=["ab"])  # "ab" is special and what merge 0 makes
    refused(tok, "has the bytes of an ordinary token", alphabet=None)


def test_refuses_special_tokens_that_prefix_each_other():
    tok = hand_made([(b"a", b"b")], specials=[EOT, EOT + EOT])
    refused(tok, "is a prefix of", alphabet=None)


def test_tiktoken_bpe_worked_example():
    assert tiktoken_bpe({b"ab": 0, b"bc": 1}, b"abc") == [b"ab", b"c"]
    assert tiktoken_bpe({b"ab": 0, b"bc": 1, b"abc": 2}, b"abc", max_rank=2) == [b"ab", b"c"]
    assert tiktoken_bpe({b"ab": 0, b"bc": 1, b"abc": 2}, b"abc") == [b"abc"]


# ---- the property: accepted means identical -------------------------------------------------------------------


@st.composite
def merge_lists(draw):
    """Random merge lists over ``a b c``: each merge joins two tokens that exist, results up to 6 bytes; now and
    then a merge makes bytes an earlier one made."""
    tokens = [b"a", b"b", b"c"]
    merges: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(1, 12))):
        a, b = draw(st.sampled_from(tokens)), draw(st.sampled_from(tokens))
        if len(a + b) <= 6 and (a, b) not in merges:
            merges.append((a, b))
            if a + b not in tokens:
                tokens.append(a + b)
    return merges


@settings(max_examples=300, deadline=None)
@given(merges=merge_lists(), texts=st.lists(st.text(alphabet="abc ", min_size=1, max_size=16), min_size=1, max_size=8))
def test_accepted_conversions_encode_identically(merges, texts):
    tok = hand_made(merges)
    if tiktoken_mismatch(tok) is not None:
        return
    enc = to_tiktoken(tok)
    for text in texts:
        assert enc.encode(text) == tok.encode(text)


@st.composite
def lists_remaking_a_token(draw):
    """A merge list, then a merge that makes one of its tokens again from another split (``train_bpe`` can learn
    such pairs); None when the list has no token with a second split into two of its tokens."""
    merges = draw(merge_lists())
    tokens = {bytes([c]) for c in b"abc"} | {a + b for a, b in merges}
    splits = [(t[:k], t[k:]) for t in sorted(tokens) for k in range(1, len(t))]
    again = [(x, y) for x, y in splits if x in tokens and y in tokens and (x, y) not in merges]
    return [*merges, draw(st.sampled_from(again))] if again else None


@settings(max_examples=400, deadline=None)  # about one in six draws gives an accepted list that remakes a token
@given(merges=lists_remaking_a_token())
def test_a_merge_remaking_a_token_is_harmless(merges):
    """Accepted with such a merge means identical on every word of up to 6 letters."""
    if merges is None:
        return
    tok = hand_made(merges)
    if tiktoken_mismatch(tok) is not None:
        return
    enc = to_tiktoken(tok)
    words = ["".join(w) for n in range(2, 7) for w in itertools.product("abc", repeat=n)]
    assert [enc.encode(w) for w in words] == [tok.encode(w) for w in words]


def reference_merge_verdict(tok: Tokenizer) -> int | None:
    """The first merge failing condition 3 or 4, found the slow way: tiktoken's loop run on every token."""
    ranks, made, previous = mergeable_ranks(tok), set(), -1
    for r, (a, b) in enumerate(tok.merges):
        if a + b in made:
            continue
        made.add(a + b)
        if ranks[a + b] <= previous or tiktoken_bpe(ranks, a + b, max_rank=ranks[a + b]) != [a, b]:
            return r
        previous = ranks[a + b]
    return None


@settings(max_examples=400, deadline=None)
@given(merges=merge_lists(), data=st.data())
def test_seam_walk_agrees_with_tiktokens_loop(merges, data):
    """The one-pass check of condition 4 finds the same first failing merge as running tiktoken on each token."""
    made = list(dict.fromkeys(a + b for a, b in merges))
    order = data.draw(st.permutations(range(len(made)))) if data.draw(st.booleans()) else range(len(made))
    tok = hand_made(merges, ids={t: 256 + k for t, k in zip(made, order, strict=True)})  # ids now and then shuffled
    found, expected = tiktoken_mismatch(tok), reference_merge_verdict(tok)
    if expected is None:
        assert found is None
    else:
        assert found is not None and f"merge {expected} " in found, (found, expected)


# ---- choosing a backend ---------------------------------------------------------------------------------------


def test_select_backend(corpus_tok):
    assert select_backend(corpus_tok, "auto").name == "tiktoken"
    assert select_backend(corpus_tok, "ours").name == "ours"
    assert select_backend(corpus_tok, "tiktoken").encoding is not None
    bad = hand_made([(b"a", b"b")], specials=[EOT, EOT + EOT])
    chosen = select_backend(bad, "auto")
    assert chosen.name == "ours" and "prefix" in chosen.reason
    with pytest.raises(TokenizerError, match="prefix"):
        select_backend(bad, "tiktoken")
    with pytest.raises(TokenizerError, match="unknown tokenizer backend"):
        select_backend(bad, "fast")


def test_without_tiktoken_installed(corpus_tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken -> ImportError
    chosen = select_backend(corpus_tok, "auto")
    assert chosen == select_backend(corpus_tok, "ours").__class__("ours", reason=NOT_INSTALLED)
    with pytest.raises(TokenizerError, match="pip install tiktoken"):
        to_tiktoken(corpus_tok)


# ---- the verdict, remembered ----------------------------------------------------------------------------------


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CS336_LM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tiktoken-check"


def test_a_verdict_is_computed_once_and_read_back(cache_dir, monkeypatch):
    good = hand_made([(b"a", b"b"), (b"ab", b"c")])
    bad = hand_made([(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    assert cached_mismatch(good) is None
    assert cached_mismatch(bad) == tiktoken_mismatch(bad) is not None
    assert len(list(cache_dir.iterdir())) == 2

    def no_check(tok):
        raise AssertionError("checked again")

    monkeypatch.setattr(tiktoken_backend, "tiktoken_mismatch", no_check)
    assert cached_mismatch(good) is None
    assert cached_mismatch(bad) is not None and "builds b'abc'" in cached_mismatch(bad)
    assert to_tiktoken(good).encode("abc") == good.encode("abc")
    with pytest.raises(AssertionError, match="checked again"):  # a vocabulary not seen before is checked
        cached_mismatch(hand_made([(b"a", b"b")]))


def test_the_key_covers_every_part_of_the_vocabulary():
    base = hand_made([(b"a", b"b"), (b"ab", b"c")], specials=[EOT])
    variants = [
        hand_made([(b"a", b"b"), (b"ab", b"c")]),  # no special token
        hand_made([(b"a", b"b"), (b"ab", b"c")], specials=["<|pad|>"]),  # another special token
        hand_made([(b"a", b"b"), (b"a", b"c")], specials=[EOT]),  # another merge
        hand_made([(b"a", b"b"), (b"ab", b"c")], ids={b"ab": 257, b"abc": 256}, specials=[EOT]),  # other ids
        Tokenizer({**dict(base.vocab), 258: b"zz"}, base.merges, [EOT]),  # one token more
    ]
    keys = {fingerprint(t) for t in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    assert fingerprint(hand_made([(b"a", b"b"), (b"ab", b"c")], specials=[EOT])) == fingerprint(base)


@pytest.mark.parametrize("content", ["{not json", '{"reason": 3}', "[]", ""])
def test_a_damaged_cache_file_is_checked_again_and_replaced(cache_dir, content):
    bad = hand_made([(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    cache_dir.mkdir(parents=True)
    path = cache_dir / f"{fingerprint(bad)}.json"
    path.write_text(content, encoding="utf-8")
    assert cached_mismatch(bad) == tiktoken_mismatch(bad)
    assert '"reason": "merge' in path.read_text(encoding="utf-8")


def test_an_unwritable_cache_is_passed_over(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("in the way", encoding="utf-8")
    monkeypatch.setenv("CS336_LM_CACHE", str(tmp_path / "file" / "cache"))  # a path through a file
    assert cached_mismatch(hand_made([(b"a", b"b")])) is None
