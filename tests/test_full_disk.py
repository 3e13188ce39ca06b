"""Every command that writes, on a real full disk: a small tmpfs (mounting needs root; skipped elsewhere, where the
injected ``full_disk`` tests in each command's own test file still run).

Each command ends with one ``error: cannot write PATH: No space left on device`` line and exit status 2, leaves
what the path held before as it was, and leaves no temporary file behind.
"""

import pytest

from cs336_lm.cli.demo_corpus import main as demo_corpus_main
from cs336_lm.cli.plot import main as plot_main
from cs336_lm.cli.tokenize import main as tokenize_main
from cs336_lm.cli.train import main as train_main
from cs336_lm.cli.train_bpe import main as train_bpe_main
from cs336_lm.data import write_tokens
from cs336_lm.run import RunDir
from cs336_lm.tinytales import write_corpus
from cs336_lm.tokenizer import Tokenizer

from .conftest import REPO_ROOT

NO_SPACE = "No space left on device"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """lm-train below trains a tiny model: one torch thread."""


def fill(directory, leave_bytes: int) -> None:
    """Write a filler file into ``directory`` until less than ``leave_bytes`` are free."""
    import shutil

    free = shutil.disk_usage(directory).free
    (directory / "filler").write_bytes(b"\0" * max(0, free - leave_bytes))


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.removeprefix("error: ").rstrip("\n")


def test_lm_train_bpe_keeps_the_old_tokenizer(tmp_path, tiny_tmpfs, capsys):
    disk = tiny_tmpfs(256)
    write_corpus(tmp_path / "text.txt", 20_000, seed=0, progress=False)
    out = disk / "tok"
    assert train_bpe_main([str(tmp_path / "text.txt"), "--vocab-size", "260", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    fill(disk, 2_000)
    assert train_bpe_main([str(tmp_path / "text.txt"), "--vocab-size", "400", "--out", str(out)]) == 2
    assert error_line(capsys) == f"cannot write {out}: {NO_SPACE}"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "tok"]


def test_lm_tokenize_keeps_the_old_token_file(tmp_path, tiny_tmpfs, capsys):
    disk = tiny_tmpfs(128)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save(tmp_path / "tok")
    write_corpus(tmp_path / "text.txt", 200_000, seed=0, progress=False)  # 400 kB of uint16 ids
    out = disk / "train.npy"
    out.write_bytes(b"previous")
    assert tokenize_main(["--tokenizer", str(tmp_path / "tok"), str(tmp_path / "text.txt"), "--out", str(out)]) == 2
    assert error_line(capsys) == f"cannot write {out}: {NO_SPACE}"
    assert out.read_bytes() == b"previous" and [p.name for p in disk.iterdir()] == ["train.npy"]


def test_lm_train_stops_at_the_checkpoint_that_does_not_fit(tmp_path, tiny_tmpfs, capsys):
    disk = tiny_tmpfs(192)  # the run files and metrics fit, a checkpoint (about 330 kB) does not
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(tmp_path / "tok")
    write_corpus(tmp_path / "text.txt", 5_000, seed=0, progress=False)
    ids = tok.encode((tmp_path / "text.txt").read_text(encoding="utf-8"))
    write_tokens(tmp_path / "train.npy", ids, tok.vocab_size)
    run = RunDir(disk / "run")
    overrides = {
        "data.train_path": tmp_path / "train.npy",
        "data.val_path": tmp_path / "train.npy",
        "data.tokenizer_dir": tmp_path / "tok",
        "train.out_dir": run.root,
        "model.vocab_size": 257,
        "model.context_length": 16,
        "model.d_model": 32,
        "model.num_heads": 2,
        "model.num_layers": 1,
        "model.d_ff": 64,
        "train.batch_size": 4,
        "train.max_steps": 4,
        "train.ckpt_every": 2,
        "train.log_every": 1,
        "train.device": "cpu",
    }
    args = ["--config", str(REPO_ROOT / "configs" / "debug.yaml"), *(f"{k}={v}" for k, v in overrides.items())]
    assert train_main(args) == 2
    line = error_line(capsys)
    assert line.startswith(f"cannot write {run.checkpoint_path(2)}: {NO_SPACE}; training stopped after step 2")
    assert "the last checkpoint is none" in line
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == []  # no torn or temporary checkpoint
    assert [r for r in (run.root / "metrics.jsonl").read_text().splitlines()][-1].startswith('{"step": 2')


def test_lm_plot_leaves_no_file(tmp_path, tiny_tmpfs, capsys):
    disk = tiny_tmpfs(16)
    (tmp_path / "run").mkdir()
    lines = [f'{{"step": {s}, "tokens": {64 * s}, "loss": {5 / s}, "lr": 0.001}}' for s in range(1, 50)]
    (tmp_path / "run" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    out = disk / "plots" / "loss.png"
    assert plot_main([str(tmp_path / "run"), "--out", str(out)]) == 2
    assert error_line(capsys) == f"cannot write {out}: {NO_SPACE}"
    assert list(disk.iterdir()) == []  # neither the PNG nor the plots/ directory made for it


def test_lm_demo_corpus_refuses_what_does_not_fit_and_keeps_the_old_corpus(tiny_tmpfs, capsys):
    disk = tiny_tmpfs(128)
    out = disk / "demo"
    assert demo_corpus_main(["--size-mb", "0.04", "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert demo_corpus_main(["--size-mb", "0.08", "--out", str(out), "--quiet"]) == 2
    assert error_line(capsys).startswith(f"cannot write {out}: the corpus needs 0.1 MB but the disk has")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
