"""``lm-train-bpe``: a happy path that writes a loadable directory, and bad input, a full disk or a read-only
``--out`` that exit 2 with one line and leave the previous tokenizer as it was."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cs336_lm.cli.train_bpe import main
from cs336_lm.tokenizer import Tokenizer, train_bpe

EOT = "<|endoftext|>"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_trains_and_writes_a_loadable_directory(shared_fixture, tmp_path, capsys):
    corpus = shared_fixture("tinystories_sample.txt")
    out = tmp_path / "tok"
    assert main([str(corpus), "--vocab-size", "300", "--special-token", EOT, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocabulary      300 tokens (1 special, 256 bytes, 43 merges)" in printed
    assert "peak memory" in printed and "longest tokens" in printed
    tok = Tokenizer.from_directory(out)
    vocab, merges = train_bpe(corpus, 300, [EOT])
    assert tok.vocab == vocab and tok.merges == merges and tok.special_tokens == [EOT]
    text = corpus.read_text(encoding="utf-8")
    assert tok.decode(tok.encode(text)) == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no temporary left beside it


def test_replaces_an_existing_tokenizer_directory(shared_fixture, tmp_path):
    corpus = shared_fixture("tinystories_sample.txt")
    out = tmp_path / "tok"
    assert main([str(corpus), "--vocab-size", "280", "--out", str(out)]) == 0
    assert main([str(corpus), "--vocab-size", "300", "--out", str(out), "--num-workers", "1"]) == 0
    assert Tokenizer.from_directory(out).vocab_size == 300


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("naïve text".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("some text")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    out = ["--out", str(tmp_path / "tok")]
    return {
        "missing": ([str(tmp_path / "nope.txt"), *out], "not found"),
        "empty": ([str(tmp_path / "empty.txt"), *out], "empty"),
        "not utf-8": ([str(tmp_path / "latin1.txt"), *out], "byte offset 2"),
        "vocab too small": ([str(tmp_path / "ok.txt"), "--vocab-size", "256", *out], "at least 257"),
        "zero workers": ([str(tmp_path / "ok.txt"), "--num-workers", "0", *out], "num_workers"),
        "out is a file": ([str(tmp_path / "ok.txt"), "--out", str(tmp_path / "a_file")], "not a directory"),
        "out holds other files": ([str(tmp_path / "ok.txt"), "--out", str(tmp_path / "busy")], "notes.txt"),
        "contradicting specials": ([str(tmp_path / "ok.txt"), "--no-special-tokens", "--special-token", "x", *out], ""),
        "special not utf-8": ([str(tmp_path / "ok.txt"), "--special-token", "<\udcff>", *out], "is not UTF-8 text"),
        "chunk inf": ([str(tmp_path / "ok.txt"), "--chunk-mb", "inf", *out], "--chunk-mb must be a positive number"),
        "chunk nan": ([str(tmp_path / "ok.txt"), "--chunk-mb", "nan", *out], "--chunk-mb must be a positive number"),
        "out under a file": (
            [str(tmp_path / "ok.txt"), "--out", str(tmp_path / "a_file" / "tok")],
            f"cannot write {tmp_path / 'a_file' / 'tok'}: {tmp_path / 'a_file'} is a file, not a directory",
        ),
    }


BAD_CASES = [
    "missing",
    "empty",
    "not utf-8",
    "vocab too small",
    "zero workers",
    "out is a file",
    "out holds other files",
    "contradicting specials",
    "special not utf-8",
    "chunk inf",
    "chunk nan",
    "out under a file",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    cases = _bad_inputs(tmp_path)
    assert sorted(cases) == sorted(BAD_CASES)
    args, message = cases[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "tok").exists()


def test_failure_leaves_an_existing_output_untouched(shared_fixture, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main([str(shared_fixture("tinystories_sample.txt")), "--vocab-size", "280", "--out", str(out)]) == 0
    before = snapshot(out)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text\n" * 100 + b"\xff")
    assert main([str(bad), "--vocab-size", "300", "--out", str(out)]) == 2
    assert "byte offset 1000" in capsys.readouterr().err
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "tok"]


def test_runs_as_a_module_in_a_subprocess(shared_fixture, tmp_path):
    out = tmp_path / "tok"
    corpus = str(shared_fixture("tinystories_sample.txt"))
    cmd = [sys.executable, "-m", "cs336_lm.cli.train_bpe", corpus, "--vocab-size", "270", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "270 tokens" in done.stdout
    assert Tokenizer.from_directory(out).vocab_size == 270
    missing = subprocess.run([*cmd[:3], str(tmp_path / "nope.txt"), "--out", str(out)], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


TEXT = "the cat sat on the mat, and the dog sat on the log. " * 40


def test_a_full_disk_is_one_line_and_keeps_the_old_tokenizer(tmp_path, capsys, full_disk):
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / "tok"
    assert main([str(tmp_path / "text.txt"), "--vocab-size", "270", "--out", str(out), "--num-workers", "1"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    full_disk(free=0)
    assert main([str(tmp_path / "text.txt"), "--vocab-size", "280", "--out", str(out), "--num-workers", "1"]) == 2
    assert capsys.readouterr().err == f"error: cannot write {out}: No space left on device\n"
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt", "tok"]  # no temporary, no .tok.old


def _without_root_powers() -> list[str] | None:
    """A command prefix that runs a program without the power to ignore file permissions: nothing for a plain
    user; for root, ``setpriv`` dropping CAP_DAC_OVERRIDE; None when neither is possible."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def test_a_read_only_out_is_refused_before_training_and_nothing_moves(tmp_path):
    prefix = _without_root_powers()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    (tmp_path / "text.txt").write_text(TEXT)
    out = tmp_path / "tok"
    assert main([str(tmp_path / "text.txt"), "--vocab-size", "270", "--out", str(out), "--num-workers", "1"]) == 0
    before = snapshot(out)
    out.chmod(0o555)
    try:
        cmd = [*prefix, sys.executable, "-m", "cs336_lm.cli.train_bpe", str(tmp_path / "text.txt"), "--out", str(out)]
        done = subprocess.run([*cmd, "--vocab-size", "280"], capture_output=True, text=True, timeout=120)
        if done.returncode == 126 or "setpriv" in done.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
        assert done.returncode == 2, done.stderr
        reason = f"no permission to write in {out}, which replacing it needs (make it writable, or choose another path)"
        assert done.stderr == f"error: cannot write {out}: {reason}\n"
        assert snapshot(out) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["text.txt", "tok"]  # nothing stranded in .tok.old
    finally:
        out.chmod(0o755)
