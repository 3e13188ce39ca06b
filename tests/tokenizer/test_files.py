"""GPT-2 tokenizer files: the byte-to-unicode table, reading GPT-2's own files, round-trips and malformed files.

The table is checked against a second derivation (tiktoken's rule: bytes whose Latin-1 character is printable
and not a space keep it, the others take ``chr(256 + k)`` in byte order) and against GPT-2's vocabulary.
"""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs336_lm.errors import TokenizerError
from cs336_lm.tokenizer import files


def printable_rule_table() -> dict[int, str]:
    keep = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + k) for k, b in enumerate(others)}}


def test_byte_table_matches_second_derivation_and_hand_values():
    table = files.bytes_to_unicode()
    assert table == printable_rule_table()
    assert len(set(table.values())) == 256
    assert (table[ord(" ")], table[ord("\n")], table[0], table[ord("a")]) == ("Ġ", "Ċ", "Ā", "a")
    assert files.unicode_to_bytes()["Ġ"] == 32


@given(st.binary(min_size=1, max_size=40))
def test_token_text_round_trip(token):
    text = files.token_to_text(token)
    assert " " not in text and "\n" not in text
    assert files.text_to_token(text) == token


GPT2_CHARS = "".join(printable_rule_table().values())


@given(st.text(alphabet=st.one_of(st.sampled_from(GPT2_CHARS), st.characters(max_codepoint=400)), max_size=12))
def test_text_to_token_accepts_exactly_the_table_characters(text):
    token = files.text_to_token(text)
    if all(c in GPT2_CHARS for c in text):
        assert token is not None and files.token_to_text(token) == text
    else:
        assert token is None


def test_text_outside_table_is_none():
    assert files.text_to_token("a b") is None  # a raw space is never in GPT-2's printable form
    assert files.text_to_token("\xad") is None and files.text_to_token("Ő") is None


def test_reads_gpt2_files_as_they_are(shared_fixture):
    vocab = files.read_vocab(shared_fixture("gpt2_vocab.json"))
    merges = files.read_merges(shared_fixture("gpt2_merges.txt"))
    assert len(vocab) == 50257 and len(merges) == 50000
    assert vocab[262] == b" the" and vocab[50256] == b"<|endoftext|>" and vocab[198] == b"\n"
    assert merges[0] == (b" ", b"t") and merges[6] == (b" t", b"he")
    # every single byte is a token, and every merge's result is in the vocabulary
    tokens = set(vocab.values())
    assert all(bytes([b]) in tokens for b in range(256))
    assert all(a + b in tokens for a, b in merges)


def test_write_then_read_round_trip(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)}
    vocab |= {256: b"\n\n", 257: b" \xff", 258: b"<|end of text|>"}
    merges = [(b"\n", b"\n"), (b" ", b"\xff")]
    files.write_tokenizer_files(tmp_path / "tok", vocab, merges, ["<|end of text|>"])
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["merges.txt", "special_tokens.json", "vocab.json"]
    assert (tmp_path / "tok" / "merges.txt").read_text(encoding="utf-8") == "#version: 0.2\nĊ Ċ\nĠ ÿ\n"
    assert files.read_vocab(tmp_path / "tok" / "vocab.json") == vocab
    assert files.read_merges(tmp_path / "tok" / "merges.txt") == merges
    assert files.read_special_tokens(tmp_path / "tok" / "special_tokens.json") == ["<|end of text|>"]


def test_literal_special_token_in_vocab_json(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"a": 0, "<|end of text|>": 1}), encoding="utf-8")
    assert files.read_vocab(path, ["<|end of text|>"]) == {0: b"a", 1: b"<|end of text|>"}
    with pytest.raises(TokenizerError, match="byte-to-unicode"):
        files.read_vocab(path)


def test_merges_header_blank_lines_and_crlf(tmp_path):
    path = tmp_path / "merges.txt"
    path.write_bytes("#version: 0.2\r\nĠ t\r\n\r\nh e\r\n".encode())
    assert files.read_merges(path) == [(b" ", b"t"), (b"h", b"e")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 0, "b": ', "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "JSON object"),
        ('{"a": "0"}', "non-negative integers"),
        ('{"a": -1}', "non-negative integers"),
        ('{"a": 0, "b": 0}', "used by two tokens"),
    ],
)
def test_malformed_vocab(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=message) as info:
        files.read_vocab(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("line", ["Ġt", "Ġ t h", "Ġ  t", "a b c", "a\tb"])
def test_malformed_merges_line_names_the_line(tmp_path, line):
    path = tmp_path / "merges.txt"
    path.write_text(f"#version: 0.2\nh e\n{line}\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"merges\.txt:3: expected two GPT-2 tokens"):
        files.read_merges(path)


def test_file_cut_inside_a_character(tmp_path):
    path = tmp_path / "merges.txt"
    path.write_bytes("h e\nĠ".encode()[:-1])
    with pytest.raises(TokenizerError, match="truncated"):
        files.read_merges(path)


def test_non_utf8_files(tmp_path):
    for name, reader in [("vocab.json", files.read_vocab), ("merges.txt", files.read_merges)]:
        path = tmp_path / name
        path.write_bytes(b"\xff\xfe{}")
        with pytest.raises(TokenizerError, match="not UTF-8"):
            reader(path)


@pytest.mark.parametrize("content", ['"<|endoftext|>"', "[1]", '[""]', '["a", "a"]', "[1,"])
def test_malformed_special_tokens(tmp_path, content):
    path = tmp_path / "special_tokens.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"special_tokens\.json"):
        files.read_special_tokens(path)


def test_merges_must_cover_vocab():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"he", 257: b"the", 258: b"<|s|>"}
    files.check_merges_cover_vocab(vocab, [(b"h", b"e"), (b"t", b"he")], ["<|s|>"], "v", "m")
    with pytest.raises(TokenizerError, match="1 tokens that no merge in m produces"):
        files.check_merges_cover_vocab(vocab, [(b"h", b"e")], ["<|s|>"], "v", "m")
