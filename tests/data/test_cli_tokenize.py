"""``lm-tokenize``: end to end in-process and as ``python -m``, and one-line errors with exit status 2."""

import subprocess
import sys

import pytest

from cs336_lm.cli.tokenize import main
from cs336_lm.data.tokens import load_tokens
from cs336_lm.tokenizer import Tokenizer

EOT = "<|endoftext|>"
MERGES = [(b"t", b"h"), (b"th", b"e"), (b" ", b"the"), (b"c", b"a"), (b"ca", b"t")]
TEXT = f"the cat sat on the mat.{EOT}the end\n{EOT}{EOT}ünïcödé 🙂\n"


@pytest.fixture
def tok_dir(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in MERGES:
        vocab[len(vocab)] = a + b
    tok = Tokenizer(vocab, MERGES, [EOT])
    return tok.save(tmp_path / "tok")


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_in_process(tmp_path, tok_dir, capsys):
    (tmp_path / "a.txt").write_text(TEXT * 20, encoding="utf-8")
    (tmp_path / "b.txt").write_text("the cat", encoding="utf-8")
    out = tmp_path / "data" / "train.npy"
    args = ["--tokenizer", tok_dir, tmp_path / "a.txt", tmp_path / "b.txt", "--out", out]
    code, stdout, err = run([*args, "--num-workers", "2", "--chunk-mb", "0.0001"], capsys)
    assert code == 0, err
    tok = Tokenizer.from_directory(tok_dir)
    expected = tok.encode(TEXT * 20) + tok.encode("the cat")
    assert load_tokens(out).tolist() == expected
    assert f"{len(expected):,} tokens (uint16)" in stdout and "MB/s" in stdout and "2 worker(s)" in stdout


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "(default: 2.0)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_tokenizer", "tokenizer directory"),
        ("tokenizer_without_vocab", "has no vocab.json"),
        ("missing_input", "does not exist"),
        ("not_utf8", "is not UTF-8 text: invalid byte 0xff at byte offset 4"),
        ("out_is_directory", "is a directory"),
        ("out_parent_is_file", "in.txt is a file, not a directory"),
        ("zero_workers", "--num-workers must be at least 1"),
        ("chunk_inf", "--chunk-mb must be a positive number, got inf"),
        ("out_is_the_input", "is one of the inputs"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, tok_dir, capsys, case, message):
    src = tmp_path / "in.txt"
    src.write_bytes(b"the \xff cat" if case == "not_utf8" else b"the cat")
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous")
    tokenizer = tok_dir
    extra = []
    if case == "missing_tokenizer":
        tokenizer = tmp_path / "nope"
    elif case == "tokenizer_without_vocab":
        (tok_dir / "vocab.json").unlink()
    elif case == "missing_input":
        src = tmp_path / "missing.txt"
    elif case == "out_is_directory":
        out = tmp_path
    elif case == "out_parent_is_file":
        out = tmp_path / "in.txt" / "out.npy"
    elif case == "zero_workers":
        extra = ["--num-workers", "0"]
    elif case == "chunk_inf":
        extra = ["--chunk-mb", "inf"]
    elif case == "out_is_the_input":
        src = out
    code, _, err = run(["--tokenizer", tokenizer, src, "--out", out, *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert (tmp_path / "out.npy").read_bytes() == b"previous"


def test_module_entry_point(tmp_path, tok_dir):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out.npy"
    cmd = [sys.executable, "-m", "cs336_lm.cli.tokenize", "--tokenizer", tok_dir, "a.txt", "--out", out, "--quiet"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert load_tokens(out).tolist() == Tokenizer.from_directory(tok_dir).encode(TEXT)


@pytest.mark.parametrize("failing", ["parts", "output"])
def test_a_full_disk_is_one_line_keeps_the_old_output_and_leaves_nothing(
    tmp_path, tok_dir, capsys, full_disk, monkeypatch, failing
):
    """The disk fills up while the workers write their part files, or while the .npy itself is written."""
    (tmp_path / "in.txt").write_text(TEXT * 20, encoding="utf-8")
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous")
    full_disk(free=0)
    if failing == "output":
        import cs336_lm.data.prepare

        monkeypatch.delattr(cs336_lm.data.prepare, "open")  # part files are written as usual
    code, _, err = run(["--tokenizer", tok_dir, tmp_path / "in.txt", "--out", out, "--chunk-mb", "0.0001"], capsys)
    assert code == 2 and err == f"error: cannot write {out}: No space left on device\n"
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.npy", "tok"]
    code, _, _ = run(["--tokenizer", tok_dir, tmp_path / "in.txt", "--out", tmp_path / "new" / "x.npy"], capsys)
    assert code == 2 and not (tmp_path / "new").exists()
