"""``tokenize_files``: the parallel token file equals single-process ``Tokenizer.encode`` of each file, concatenated.

Inputs are cut into many small chunks (``chunk_bytes`` of a few hundred bytes) so that every cut rule is
exercised: at special tokens, next to overlapping special tokens, at safe newlines when there are none.
"""

import os
import random

import numpy as np
import pytest

from cs336_lm.data import prepare
from cs336_lm.data.prepare import tokenize_files
from cs336_lm.data.tokens import load_tokens
from cs336_lm.errors import DataError, WriteError
from cs336_lm.tokenizer import Tokenizer

EOT = "<|endoftext|>"
MERGES = [(b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"i", b"n"), (b"e", b"r"), (b" ", b"a"), (b"o", b"n")]
MERGES += [(b"\n", b"\n"), (b"'", b"s"), (b"\xc3", b"\xa9"), (b" a", b"n")]
WORDS = ["the", "in", "an", "on", "her", "it's", "café", "naïve", "日本", "🙂", "42", "?!", "  ", "\t", "'ll"]


def make_tokenizer(special_tokens=(EOT, EOT + EOT), extra: dict[int, bytes] | None = None) -> Tokenizer:
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in MERGES:
        vocab[len(vocab)] = a + b
    return Tokenizer(vocab | (extra or {}), MERGES, list(special_tokens))


def make_text(seed: int, docs: int, separator: str | None = EOT) -> str:
    """Documents of random words, spaces and newlines, joined by ``separator`` (sometimes doubled)."""
    rng = random.Random(seed)
    out = []
    for _ in range(docs):
        words = [rng.choice(WORDS) + rng.choice([" ", " ", "\n", "", "\n\n", ". "]) for _ in range(rng.randint(5, 60))]
        out.append("".join(words))
        if separator:
            out.append(separator * rng.choice([1, 1, 2, 3]))
    return "".join(out)


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_file_equals_encode(tmp_path, workers):
    tok = make_tokenizer()
    text = make_text(0, 80)
    src = write(tmp_path / "a.txt", text)
    stats = tokenize_files(tok, [src], tmp_path / "out.npy", num_workers=workers, chunk_bytes=300, progress=False)
    ids = load_tokens(tmp_path / "out.npy")
    assert ids.dtype == np.uint16 and ids.ndim == 1
    assert ids.tolist() == tok.encode(text)
    assert stats.tokens == len(ids) and stats.bytes == len(text.encode()) and stats.chunks > 10
    assert stats.workers == workers and stats.mb_per_s > 0
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "out.npy"]  # no temporary files left behind


def test_several_files_are_encoded_each_on_its_own(tmp_path):
    tok = make_tokenizer()
    texts = [make_text(1, 10), "the end", make_text(2, 30, separator=None), "'s"]
    paths = [write(tmp_path / f"{i}.txt", t) for i, t in enumerate(texts)]
    tokenize_files(tok, paths, tmp_path / "out.npy", num_workers=2, chunk_bytes=200, progress=False)
    expected = [i for t in texts for i in tok.encode(t)]
    assert load_tokens(tmp_path / "out.npy").tolist() == expected


def test_without_special_tokens_cuts_at_safe_newlines(tmp_path):
    tok = make_tokenizer(special_tokens=())
    text = make_text(3, 60, separator="x\ny")
    src = write(tmp_path / "a.txt", text)
    stats = tokenize_files(tok, [src], tmp_path / "out.npy", num_workers=2, chunk_bytes=100, progress=False)
    assert stats.chunks > 5
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(text)


@pytest.mark.parametrize("chunk_bytes", [1, 5, 13])
def test_whitespace_runs_around_cuts(tmp_path, chunk_bytes):
    """Runs of newlines and spaces, where a cut at the wrong newline would change the pre-tokens."""
    tok = make_tokenizer(special_tokens=())
    text = "a\n\n\nb \n \nc\n\n d\t\n\ne'\nll\n\n\n\n  \n" * 20
    src = write(tmp_path / "a.txt", text)
    tokenize_files(tok, [src], tmp_path / "out.npy", num_workers=1, chunk_bytes=chunk_bytes, progress=False)
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(text)


@pytest.mark.parametrize("chunk_bytes", [1, 4, 9])
def test_cuts_never_split_a_longer_special_token(tmp_path, chunk_bytes):
    """Cuts go to the first special token after each nominal boundary, but never inside a longer one."""
    tok = make_tokenizer(special_tokens=("<|s|>", "a<|s|>", "<|s|><|s|>"))
    text = "xa<|s|>b<|s|><|s|><|s|>a a<|s|>" * 10 + "the<|s|>a"
    src = write(tmp_path / "a.txt", text)
    tokenize_files(tok, [src], tmp_path / "out.npy", num_workers=1, chunk_bytes=chunk_bytes, progress=False)
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(text)


def test_real_text_with_gpt2(tmp_path, shared_fixture):
    tok = Tokenizer.from_files(shared_fixture("gpt2_vocab.json"), shared_fixture("gpt2_merges.txt"), [EOT])
    text = shared_fixture("tinystories_sample.txt").read_text(encoding="utf-8")
    tok.save(tmp_path / "tok")
    src = write(tmp_path / "ts.txt", text)
    tokenize_files(tmp_path / "tok", [src], tmp_path / "out.npy", num_workers=2, chunk_bytes=500, progress=False)
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(text)


def test_large_vocabulary_uses_uint32(tmp_path):
    tok = make_tokenizer(extra={70_000: b"zz"})
    tok = Tokenizer(tok.vocab, [*tok.merges, (b"z", b"z")], tok.special_tokens)
    src = write(tmp_path / "a.txt", "zz the zz")
    tokenize_files(tok, [src], tmp_path / "out.npy", num_workers=1, progress=False)
    ids = load_tokens(tmp_path / "out.npy")
    assert ids.dtype == np.uint32 and ids.tolist() == tok.encode("zz the zz") and 70_000 in ids.tolist()


def test_ids_that_do_not_fit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "token_dtype", lambda vocab_size: np.dtype(np.uint8))
    src = write(tmp_path / "a.txt", "the the")  # " the" is id 258 > 255
    with pytest.raises(DataError, match="does not fit the token file's dtype uint8"):
        tokenize_files(make_tokenizer(), [src], tmp_path / "out.npy", num_workers=1, progress=False)
    assert not (tmp_path / "out.npy").exists()


def test_bad_utf8_leaves_existing_output_untouched(tmp_path):
    (tmp_path / "out.npy").write_bytes(b"previous")
    good = write(tmp_path / "good.txt", make_text(4, 20))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text " * 50 + b"\xff oops" + f"{EOT}more".encode())
    with pytest.raises(DataError, match=r"bad\.txt is not UTF-8 text: invalid byte 0xff at byte offset 500"):
        tokenize_files(make_tokenizer(), [good, bad], tmp_path / "out.npy", num_workers=2, chunk_bytes=64)
    assert (tmp_path / "out.npy").read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["bad.txt", "good.txt", "out.npy"]


def test_input_and_output_errors(tmp_path):
    tok = make_tokenizer()
    src = write(tmp_path / "a.txt", "the")
    with pytest.raises(DataError, match="does not exist"):
        tokenize_files(tok, [tmp_path / "missing.txt"], tmp_path / "out.npy")
    with pytest.raises(WriteError, match="is a directory"):
        tokenize_files(tok, [src], tmp_path)
    with pytest.raises(WriteError, match=r"out\.npy: .*a\.txt is a file, not a directory"):
        tokenize_files(tok, [src], src / "out.npy")  # the parent is a file
    with pytest.raises(DataError, match="is one of the inputs"):
        tokenize_files(tok, [src], src)
    with pytest.raises(DataError, match="empty"):
        tokenize_files(tok, [write(tmp_path / "empty.txt", "")], tmp_path / "out.npy")
    with pytest.raises(DataError, match="no input files"):
        tokenize_files(tok, [], tmp_path / "out.npy")


def test_output_directory_is_created(tmp_path):
    src = write(tmp_path / "a.txt", "the cat")
    tokenize_files(make_tokenizer(), [src], tmp_path / "new" / "dir" / "out.npy", progress=False)
    assert load_tokens(tmp_path / "new" / "dir" / "out.npy").tolist() == make_tokenizer().encode("the cat")


@pytest.mark.parametrize(("room", "count"), [(10**9, 0), (10**9, 7), (10**9, 999_999_999), (5, 5), (10**70, 12)])
def test_a_header_padded_for_a_larger_count_reads_back(tmp_path, room, count):
    """The header is written first for an upper bound on the count, then again for the true count at that size."""
    dtype = np.dtype(np.uint16)
    size = len(prepare.npy_header(dtype, room))
    header = prepare.npy_header(dtype, count, size=size)
    assert len(header) == size and size % 64 == 0
    ids = np.arange(count, dtype=dtype) if count < 10**6 else np.zeros(0, dtype=dtype)
    path = tmp_path / "x.npy"
    path.write_bytes(header + ids.tobytes())
    if count < 10**6:
        assert np.array_equal(np.load(path), ids)
    with open(path, "rb") as f:  # numpy's own reader parses the padded header
        assert np.lib.format.read_magic(f) == (1, 0)
        assert np.lib.format.read_array_header_1_0(f) == ((count,), False, dtype)
    with pytest.raises(ValueError, match="needs"):
        prepare.npy_header(dtype, room * 10**70, size=size)


def test_parts_that_finish_out_of_order_are_appended_in_order(tmp_path):
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    chunks = [np.arange(i * 10, i * 10 + i, dtype=np.uint16) for i in range(6)]  # chunk 0 is empty
    for i, ids in enumerate(chunks):
        (parts_dir / f"{i:08d}.bin").write_bytes(ids.tobytes())
    with open(tmp_path / "out.npy", "wb") as out:
        parts = prepare._OrderedParts(out, str(parts_dir), len(chunks), np.dtype(np.uint16), max_tokens=1000)
        for i in (3, 1, 5):
            parts.add(i, len(chunks[i]))
        assert parts.appended == 0 and (parts_dir / "00000001.bin").exists()
        parts.add(0, 0)  # 0 and 1 can go; 3 waits for 2
        assert parts.appended == 2 and not (parts_dir / "00000001.bin").exists()
        with pytest.raises(DataError, match="only 2 of 6"):
            parts.finish()
        parts.add(4, len(chunks[4]))
        parts.add(2, len(chunks[2]))
        assert parts.finish() == sum(map(len, chunks)) and list(parts_dir.iterdir()) == []
    assert np.array_equal(np.load(tmp_path / "out.npy"), np.concatenate(chunks))
