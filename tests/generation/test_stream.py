"""The streaming UTF-8 decoder against ``bytes.decode(errors="replace")`` and CPython's incremental decoder."""

import codecs
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs336_lm.generation.stream import TokenTextStream, Utf8StreamDecoder, incomplete_tail


def stream_pieces(chunks: list[bytes]) -> list[str]:
    d = Utf8StreamDecoder()
    return [d.feed(c) for c in chunks] + [d.flush()]


def split_every(data: bytes, n: int) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


@pytest.mark.parametrize("text", ["", "hello", "中文字符", "naïve café", "😀👍🏽🇩🇪", "a😀b中c", "ö" * 7])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_split_characters_print_once_and_whole(text, size):
    pieces = stream_pieces(split_every(text.encode(), size))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)  # never half a character


def test_emoji_split_over_byte_tokens_appears_when_complete():
    emoji = "😀".encode()  # F0 9F 98 80
    d = Utf8StreamDecoder()
    assert [d.feed(emoji[i : i + 1]) for i in range(4)] == ["", "", "", "😀"]
    assert d.flush() == ""


@pytest.mark.parametrize(
    ("buf", "expected"),
    [
        (b"", 0),
        (b"abc", 0),
        (b"a\xf0", 1),
        (b"a\xf0\x9f", 2),
        (b"a\xf0\x9f\x98", 3),
        (b"a\xf0\x9f\x98\x80", 0),
        (b"\xe4\xb8", 2),
        (b"\xe0\x80", 0),  # E0 must be followed by A0..BF
        (b"\xed\xa0", 0),  # surrogates are not UTF-8
        (b"\xf4\x90", 0),  # beyond U+10FFFF
        (b"\xc0", 0),  # overlong lead, never valid
        (b"\x80\x80\x80", 0),  # lone continuation bytes
    ],
)
def test_incomplete_tail(buf, expected):
    assert incomplete_tail(buf) == expected


def test_invalid_bytes_become_replacement_characters():
    data = b"ok\xff\xfe then \xe4\xb8 broken \xf0\x9f\x98"
    assert "".join(stream_pieces(split_every(data, 1))) == data.decode("utf-8", errors="replace")


@given(st.binary(max_size=64), st.lists(st.integers(min_value=0, max_value=64), max_size=8))
def test_any_split_of_any_bytes_equals_full_decode(data, cuts):
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert "".join(stream_pieces(chunks)) == data.decode("utf-8", errors="replace")


@given(st.text(max_size=40), st.integers(min_value=1, max_value=5))
def test_pieces_match_cpython_incremental_decoder(text, size):
    reference = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks = split_every(text.encode(), size)
    expected = [reference.decode(c) for c in chunks] + [reference.decode(b"", final=True)]
    assert stream_pieces(chunks) == expected


def test_token_text_stream_maps_ids_to_bytes():
    vocab = {0: b"\xe4", 1: b"\xb8\xad", 2: b"!", 3: "😀".encode()[:2], 4: "😀".encode()[2:]}
    stream = TokenTextStream(vocab)
    assert [stream.feed(i) for i in [0, 1, 2, 3, 4]] == ["", "中", "!", "", "😀"]
    assert stream.feed([3]) == ""
    assert stream.flush() == "\ufffd"


def test_unknown_token_ids_print_a_replacement_character():
    stream = TokenTextStream({0: b"a"})
    assert stream.feed([0, 7, 0]) == "a\ufffda"
