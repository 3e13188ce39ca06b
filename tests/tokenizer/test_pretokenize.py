"""Pre-tokenization: chunk boundaries, safe cuts, UTF-8 errors and map-reduce counting.

References: ``bytes.find`` for the chunk boundaries, a whole-text count (one chunk, one process) for every
chunked or parallel count, and the naive trainer's own pre-tokenizer (``naive_bpe.py``, its own copy of
the GPT-2 pattern and special-token split).
"""

import importlib.util
import io
import itertools
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_lm.errors import DataError
from cs336_lm.tokenizer.pretokenize import (
    chunk_boundaries,
    count_pretokens,
    count_text_pretokens,
    decode_utf8,
    find_chunk_boundaries,
    find_newline_boundaries,
)

_spec = importlib.util.spec_from_file_location("naive_bpe", Path(__file__).with_name("naive_bpe.py"))
naive_bpe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(naive_bpe)

EOT = "<|endoftext|>"


def reference_boundaries(data: bytes, chunk: int, token: bytes) -> list[int]:
    """The specification of ``find_chunk_boundaries`` written with ``bytes.find``."""
    if not data:
        return [0]
    bounds, pos = [0], chunk
    while pos < len(data):
        found = data.find(token, pos)
        if found < 0:
            break
        bounds.append(found)
        pos = found + chunk
    return [*bounds, len(data)]


def naive_counts(text: str, specials: list[str]) -> dict[bytes, int]:
    return {b"".join(word): n for word, n in naive_bpe.naive_pretoken_counts(text, specials).items()}


pieces = st.sampled_from(["a", "b", "ab", " ", "  ", "\n", "\n\n", "x\ny", "é", "日本", "'s", "1", "!", "\t", EOT])
texts = st.lists(pieces, max_size=60).map("".join)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.sampled_from([b"x", b"yy", b"\n", b"<|endoftext|>", b"\xc3\xa9", b"z" * 1500]), max_size=40),
    chunk=st.integers(1, 5000),
)
def test_find_chunk_boundaries_matches_bytes_find(parts, chunk):
    data, token = b"".join(parts), EOT.encode()
    assert find_chunk_boundaries(io.BytesIO(data), chunk, token) == reference_boundaries(data, chunk, token)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.sampled_from([b"a", b"bb", b"\n", EOT.encode(), b"<|end", b"oftext|>"]), max_size=300),
       chunk=st.integers(1, 60), cut=st.tuples(st.floats(0, 1), st.floats(0, 1)))  # fmt: skip
def test_a_range_is_cut_as_if_it_were_the_whole_file(parts, chunk, cut):
    data, token = b"".join(parts), EOT.encode()
    start, end = sorted(int(c * len(data)) for c in cut)
    expected = [start + b for b in reference_boundaries(data[start:end], chunk, token)]
    assert find_chunk_boundaries(io.BytesIO(data), chunk, token, start, end) == expected
    lines = data.replace(token, b"x\ny")
    start, end = sorted(int(c * len(lines)) for c in cut)
    expected = [start + b for b in find_newline_boundaries(io.BytesIO(lines[start:end]), chunk)]
    assert find_newline_boundaries(io.BytesIO(lines), chunk, start, end) == expected


@settings(max_examples=60, deadline=None)
@given(text=texts.map(lambda t: t.replace(EOT, "")), chunk=st.integers(1, 40))
def test_newline_boundaries_cut_only_where_pretokens_are_unchanged(text, chunk):
    data = text.encode()
    bounds = find_newline_boundaries(io.BytesIO(data), chunk)
    assert bounds[0] == 0 and bounds[-1] == len(data) and bounds == sorted(set(bounds))
    for b in bounds[1:-1]:
        assert data[b - 1] == ord("\n") and 0x21 <= data[b - 2] <= 0x7E and 0x21 <= data[b] <= 0x7E
    chunked = Counter()
    for lo, hi in itertools.pairwise(bounds):
        chunked.update(count_text_pretokens(data[lo:hi].decode(), []))
    assert chunked == count_text_pretokens(text, [])


def test_newline_cut_needs_visible_characters_on_both_sides():
    # "a \nb": cutting after the newline would turn the whitespace run " \n" into " " + "\n"
    data = b"a \nb" * 10 + b"c\nd" + b"a \nb" * 10
    bounds = find_newline_boundaries(io.BytesIO(data), 1)
    assert bounds == [0, data.index(b"c\nd") + 2, len(data)]


@settings(max_examples=40, deadline=None)
@given(text=texts, chunk=st.integers(1, 30))
def test_chunk_boundaries_never_split_an_overlapping_special(tmp_path_factory, text, chunk):
    # "x<|endoftext|>" is also special: a cut at its inner "<|endoftext|>" would leave a stray "x" behind
    specials = [EOT, "x" + EOT]
    path = tmp_path_factory.mktemp("chunks") / "text.txt"
    text = text.replace("a", "x" + EOT)
    path.write_bytes(text.encode())
    bounds = chunk_boundaries(path, chunk, specials)
    data = text.encode()
    for b in bounds[1:-1]:
        assert data[b:].startswith(EOT.encode()) and not data[:b].endswith(b"x")
    total = Counter()
    for lo, hi in itertools.pairwise(bounds):
        total.update(count_text_pretokens(data[lo:hi].decode(), specials))
    assert total == count_text_pretokens(text, specials)


@settings(max_examples=60, deadline=None)
@given(text=texts)
def test_count_text_pretokens_matches_naive_pretokenizer(text):
    ours = {k.encode(): v for k, v in count_text_pretokens(text, [EOT]).items()}
    assert ours == naive_counts(text, [EOT])


def test_count_text_pretokens_example():
    assert count_text_pretokens("a a<|e|>a", ["<|e|>"]) == Counter({"a": 2, " a": 1})


def test_decode_utf8_names_the_byte_offset():
    with pytest.raises(DataError, match=r"f\.txt is not UTF-8 text: invalid byte 0xff at byte offset 1003"):
        decode_utf8(b"ab\xffc", "f.txt", offset=1001)


@pytest.mark.parametrize("specials", [[EOT], []])
def test_parallel_count_equals_serial_and_naive(shared_fixture, specials):
    path = shared_fixture("tinystories_sample.txt" if specials else "corpus.en")
    serial = count_pretokens(path, specials, num_workers=1, chunk_bytes=1 << 30)
    parallel = count_pretokens(path, specials, num_workers=2, chunk_bytes=700)
    chunked_in_process = count_pretokens(path, specials, num_workers=1, chunk_bytes=700)
    assert len(chunk_boundaries(path, 700, specials)) > 3  # several chunks, so the pool really ran
    assert parallel == serial == chunked_in_process
    assert serial == naive_counts(path.read_text(encoding="utf-8"), specials)


def test_bad_utf8_in_a_later_chunk_is_reported_with_its_file_offset(tmp_path):
    path = tmp_path / "bad.txt"
    good = ("hello world " * 20 + EOT) * 20
    path.write_bytes(good.encode() + b"abc\xe9def")
    with pytest.raises(DataError, match=f"invalid byte 0xe9 at byte offset {len(good.encode()) + 3}"):
        count_pretokens(path, [EOT], num_workers=2, chunk_bytes=200)
