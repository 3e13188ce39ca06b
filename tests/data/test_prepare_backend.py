"""``tokenize_files(backend=…)`` / ``lm-tokenize --backend``: tiktoken writes the same token file as ours.

``auto`` takes tiktoken where the vocabulary maps onto it exactly and says why not otherwise; asking for
``tiktoken`` where it does not map is an error that leaves no output behind.
"""

import functools

import numpy as np
import pytest

from cs336_lm.cli.tokenize import main as tokenize_main
from cs336_lm.data.prepare import tokenize_files
from cs336_lm.data.tokens import load_tokens
from cs336_lm.errors import TokenizerError
from cs336_lm.tokenizer import Tokenizer, train_bpe

EOT = "<|endoftext|>"


@functools.cache
def trained(corpus: str) -> Tokenizer:
    vocab, merges = train_bpe(corpus, 700, [EOT, "<|pad|>"])
    return Tokenizer(vocab, merges, [EOT, "<|pad|>"])


@pytest.fixture
def corpus(shared_fixture, tmp_path):
    """The TinyStories sample as documents separated by special tokens, repeated to ~60 kB."""
    text = shared_fixture("tinystories_sample.txt").read_text(encoding="utf-8")
    docs = text.replace("<|endoftext|>", EOT).split("\n\n")
    path = tmp_path / "in.txt"
    path.write_text((f"{EOT}<|pad|>".join(docs) + EOT) * 15, encoding="utf-8")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_tiktoken_file_equals_ours(shared_fixture, corpus, tmp_path, workers):
    tok = trained(str(shared_fixture("tinystories_sample.txt")))
    ours = tokenize_files(tok, [corpus], tmp_path / "ours.npy", workers, chunk_bytes=5000, backend="ours")
    fast = tokenize_files(tok, [corpus], tmp_path / "fast.npy", workers, chunk_bytes=5000, backend="tiktoken")
    auto = tokenize_files(tok, [corpus], tmp_path / "auto.npy", workers, chunk_bytes=5000)
    assert (ours.backend, fast.backend, auto.backend) == ("ours", "tiktoken", "tiktoken")
    expected = load_tokens(tmp_path / "ours.npy")
    assert expected.tolist() == tok.encode(corpus.read_text(encoding="utf-8"))
    for name in ("fast.npy", "auto.npy"):
        got = load_tokens(tmp_path / name)
        assert got.dtype == np.uint16 and np.array_equal(got, expected)
    assert fast.tokens == ours.tokens and fast.chunks > 5


def test_auto_falls_back_and_says_why(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"th"}
    tok = Tokenizer(vocab, [(b"t", b"h")], [EOT, EOT + EOT])  # one special token a prefix of another
    src = tmp_path / "in.txt"
    src.write_text(f"the{EOT}{EOT}then", encoding="utf-8")
    stats = tokenize_files(tok, [src], tmp_path / "out.npy", 1, progress=False)
    assert stats.backend == "ours" and "is a prefix of" in stats.backend_note
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(src.read_text(encoding="utf-8"))
    with pytest.raises(TokenizerError, match="prefix"):
        tokenize_files(tok, [src], tmp_path / "forced.npy", 1, progress=False, backend="tiktoken")
    assert not (tmp_path / "forced.npy").exists()


def test_auto_discards_what_tiktoken_wrote_when_it_is_not_exact(tmp_path):
    """Many chunks are already in the output when the check says no: the file holds ours alone."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = Tokenizer(vocab, [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")], [EOT])  # tiktoken builds abc as a + bc
    src = tmp_path / "in.txt"
    src.write_text(f"abcd abc{EOT}" * 3000, encoding="utf-8")
    stats = tokenize_files(tok, [src], tmp_path / "out.npy", 2, chunk_bytes=2000, progress=False)
    assert stats.backend == "ours" and "builds b'abc'" in stats.backend_note and stats.chunks > 10
    assert load_tokens(tmp_path / "out.npy").tolist() == tok.encode(src.read_text(encoding="utf-8"))


def test_cli_backend(shared_fixture, corpus, tmp_path, capsys):
    tok = trained(str(shared_fixture("tinystories_sample.txt")))
    tok_dir = tok.save(tmp_path / "tok")
    out = tmp_path / "x.npy"
    assert tokenize_main(["--tokenizer", str(tok_dir), str(corpus), "--out", str(out), "--backend", "tiktoken"]) == 0
    assert "tiktoken encoder" in capsys.readouterr().out
    assert load_tokens(out).tolist() == tok.encode(corpus.read_text(encoding="utf-8"))
    assert tokenize_main(["--tokenizer", str(tok_dir), str(corpus), "--out", str(out), "--backend", "ours"]) == 0
    assert "ours encoder" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tokenize_main(["--tokenizer", str(tok_dir), str(corpus), "--out", str(out), "--backend", "fast"])
