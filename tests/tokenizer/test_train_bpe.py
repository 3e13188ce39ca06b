"""``train_bpe`` against the deliberately naive trainer in ``naive_bpe.py`` (recounts everything per merge).

Equal merges and vocabularies on the fixture texts, hand-built tie cases and hypothesis-generated texts with
special tokens; parallel == serial; determinism; special tokens never merged; bad input errors.
"""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs336_lm.errors import ConfigError, DataError, TokenizerError
from cs336_lm.tokenizer import train_bpe
from cs336_lm.tokenizer.merge import descending_key, initial_pairs, learn_merges

_spec = importlib.util.spec_from_file_location("naive_bpe", Path(__file__).with_name("naive_bpe.py"))
naive_bpe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(naive_bpe)

EOT = "<|endoftext|>"


def train_text(tmp_path: Path, text: str, vocab_size: int, specials: list[str], **kwargs):
    path = tmp_path / "input.txt"
    path.write_bytes(text.encode("utf-8"))
    return train_bpe(path, vocab_size, specials, **kwargs)


@pytest.mark.parametrize(
    ("name", "vocab_size"),
    [("corpus.en", 300), ("tinystories_sample.txt", 400), pytest.param("corpus.en", 600, marks=pytest.mark.slow)],
)
def test_matches_naive_trainer_on_fixtures(shared_fixture, name, vocab_size):
    path = shared_fixture(name)
    vocab, merges = train_bpe(path, vocab_size, [EOT])
    ref_vocab, ref_merges = naive_bpe.naive_train_bpe(path, vocab_size, [EOT])
    assert merges == ref_merges
    assert vocab == ref_vocab
    assert len(vocab) == vocab_size


def test_stops_early_when_no_pair_is_left(shared_fixture):
    path = shared_fixture("tinystories_sample.txt")
    vocab, merges = train_bpe(path, 5000, [EOT])
    ref_vocab, ref_merges = naive_bpe.naive_train_bpe(path, 5000, [EOT])
    assert (vocab, merges) == (ref_vocab, ref_merges)
    assert len(vocab) < 5000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # every pair once: the greatest pair first, (c, d) > (b, c) > (a, b)
        ("abcd", [(b"c", b"d"), (b"b", b"cd"), (b"a", b"bcd")]),
        # (b, c) and (a, b) twice each: (b, c) wins; then (a, bc) beats (a, b): a longer string is greater
        (f"bc{EOT}abc{EOT}ab", [(b"b", b"c"), (b"a", b"bc"), (b"a", b"b")]),
        # overlapping pair: "aaa" has (a, a) twice but merges left to right into [aa, a]
        ("aaa", [(b"a", b"a"), (b"aa", b"a")]),
        ("aaaa", [(b"a", b"a"), (b"aa", b"aa")]),
        # (t, h) and (h, e) 3 times each, (" ", t) twice: "t" > "h", so (t, h) first; counts beat bytes
        ("the the the", [(b"t", b"h"), (b"th", b"e"), (b" ", b"the")]),
    ],
)
def test_hand_built_ties(tmp_path, text, expected):
    vocab, merges = train_text(tmp_path, text, 300, [EOT])
    assert merges == expected
    assert merges == naive_bpe.naive_train_bpe_text(text, 300, [EOT])[1]
    assert [vocab[257 + i] for i in range(len(expected))] == [a + b for a, b in expected]


def test_a_second_spelling_of_a_token_adds_no_id(tmp_path):
    # "bc" merges first, then (a, bc) -> "abc"; in "ab|c" words (a, b) then (ab, c) spells "abc" again
    text = f"bc{EOT}bc{EOT}bc{EOT}abc{EOT}abc{EOT}ab c{EOT}abx{EOT}abx{EOT}abx"
    vocab, merges = train_text(tmp_path, text, 400, [EOT])
    ref_vocab, ref_merges = naive_bpe.naive_train_bpe_text(text, 400, [EOT])
    assert (vocab, merges) == (ref_vocab, ref_merges)
    assert len(set(vocab.values())) == len(vocab)


specials_choices = st.sampled_from([[], [EOT], ["<|a|>", EOT], ["<|a|>", "<|a|><|a|>"]])
pieces = st.sampled_from(["a", "b", "ab", "ba", "c", " ", "  ", "\n", "é", "'s", "1", "!", "<|a|>", EOT, "日"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(pieces, max_size=50).map("".join), specials=specials_choices, extra=st.integers(0, 40))
def test_matches_naive_trainer_on_generated_text(tmp_path, data, specials, extra):
    if not data:
        data = "a"
    vocab_size = 256 + len(specials) + extra
    vocab, merges = train_text(tmp_path, data, vocab_size, specials)
    ref_vocab, ref_merges = naive_bpe.naive_train_bpe_text(data, vocab_size, specials)
    assert merges == ref_merges
    assert vocab == ref_vocab
    # no merge crosses a pre-token or special-token boundary: each merged token lies inside one pre-token
    pretokens = [b"".join(word) for word in naive_bpe.naive_pretoken_counts(data, specials)]
    assert all(any(a + b in p for p in pretokens) for a, b in merges)


def test_special_tokens_lead_the_vocabulary_and_are_never_merged(tmp_path):
    text = f"ab<|x|>ab<|x|>ab{EOT}ab" * 20
    vocab, merges = train_text(tmp_path, text, 270, [EOT, "<|x|>"])
    assert vocab[0] == EOT.encode() and vocab[1] == b"<|x|>"
    assert [vocab[2 + b] for b in range(256)] == [bytes([b]) for b in range(256)]
    # no merge reaches into or across a special token: every merged token lies inside a pre-token
    assert all(b"<" not in a + b and b">" not in a + b for a, b in merges)


def test_parallel_equals_serial_and_is_deterministic(shared_fixture):
    path = shared_fixture("corpus.en")
    serial = train_bpe(path, 400, [EOT], num_workers=1)
    parallel = train_bpe(path, 400, [EOT], num_workers=2, chunk_bytes=8192)
    again = train_bpe(path, 400, [EOT], num_workers=2, chunk_bytes=8192)
    assert serial == parallel == again


def test_parallel_equals_serial_with_special_tokens(shared_fixture):
    path = shared_fixture("tinystories_sample.txt")
    assert train_bpe(path, 350, [EOT], num_workers=2, chunk_bytes=300) == train_bpe(path, 350, [EOT], num_workers=1)


def test_descending_key_orders_bytes_backwards():
    tokens = [b"", b"a", b"ab", b"b", b"\x00", b"\xff", b"\xff\x00", b"ba"]
    assert sorted(tokens, key=descending_key) == sorted(tokens, reverse=True)
    pairs = [(b"a", b"b"), (b"a", b"bc"), (b"ab", b""), (b"b", b"a"), (b"", b"ab")]
    assert sorted(pairs, key=lambda p: descending_key(p[0]) + descending_key(p[1])) == sorted(pairs, reverse=True)


def test_initial_pairs_example():
    counts, where = initial_pairs([b"abab", b"ba"], [3, 5], 8)
    assert counts == {0x6162: 6, 0x6261: 3 + 5}
    assert dict(where) == {0x6162: {0}, 0x6261: {0, 1}}


def test_learn_merges_on_counts_directly():
    assert learn_merges({b"ab": 1, b"cd": 1}, 1, progress=False) == [(b"c", b"d")]
    assert learn_merges({b"ab": 2, b"cd": 1}, 5, progress=False) == [(b"a", b"b"), (b"c", b"d")]
    assert learn_merges({}, 5, progress=False) == []


def test_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        train_bpe(tmp_path / "missing.txt", 300, [EOT])
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        train_bpe(tmp_path / "empty.txt", 300, [EOT])
    with pytest.raises(DataError, match="not a regular file"):
        train_bpe(tmp_path, 300, [EOT])
    (tmp_path / "ok.txt").write_text("hello")
    with pytest.raises(TokenizerError, match="at least 258"):
        train_bpe(tmp_path / "ok.txt", 257, [EOT, "<|x|>"])
    with pytest.raises(TokenizerError, match="non-empty"):
        train_bpe(tmp_path / "ok.txt", 300, [""])
    with pytest.raises(ConfigError, match="num_workers"):
        train_bpe(tmp_path / "ok.txt", 300, [], num_workers=0)
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="byte offset 3"):
        train_bpe(tmp_path / "latin1.txt", 300, [])
