"""Atomic writes: content appears whole or not at all, with the permissions a plain open/mkdir would give; every
failure is one ``WriteError`` naming the target, and directories made for a failed output are removed again."""

import contextlib
import errno
import os
import stat

import pytest

from cs336_lm import fileio
from cs336_lm.errors import WriteError
from cs336_lm.fileio import atomic_directory, atomic_write, check_writable, make_directories, output_directory


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target, "w", encoding="utf-8") as f:
        f.write("new")
    assert target.read_text() == "new"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(target) == _mode(plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "plain.txt"]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_directory_replaces_existing_and_failure_keeps_it(tmp_path):
    target = tmp_path / "tok"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert _mode(target) == _mode(plain)
    with pytest.raises(ValueError), atomic_directory(target) as d:
        (d / "b.txt").write_text("2")
        raise ValueError("fail")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_directory(target) as d:
        (d / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "tok"]


# ---------------------------------------------------------------------------------------------- failures


def test_full_disk_is_a_write_error_naming_the_target_and_old_content_survives(tmp_path, full_disk):
    target = tmp_path / "out.txt"
    target.write_text("old")
    full_disk(free=2)
    message = rf"^cannot write {target}: No space left on device$"
    with pytest.raises(WriteError, match=message), atomic_write(target, "w", encoding="utf-8") as f:
        f.write("new content")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_names_what_is_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = {
        tmp_path: "it is a directory",
        tmp_path / "file" / "out.txt": f"{tmp_path / 'file'} is a file, not a directory",
        tmp_path / "missing" / "out.txt": f"directory {tmp_path / 'missing'} does not exist",
    }
    for path, reason in cases.items():
        with pytest.raises(WriteError) as info, atomic_write(path) as f:
            f.write(b"x")
        assert str(info.value) == f"cannot write {path}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_output_directory_removes_only_what_it_created_when_the_body_fails(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), output_directory(tmp_path / "kept" / "a" / "b") as d:
        assert d.is_dir()
        raise RuntimeError("the output could not be produced")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    with pytest.raises(RuntimeError), output_directory(tmp_path / "new") as d:
        (d / "half.txt").write_text("something was written")  # not empty any more: left alone
        raise RuntimeError
    assert (tmp_path / "new" / "half.txt").exists()


def test_make_directories_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*f/a/b: .*f is a file, not a directory"):
        make_directories(tmp_path / "f" / "a" / "b")
    with pytest.raises(WriteError, match="it exists and is not a directory"):
        make_directories(tmp_path / "f")
    assert make_directories(tmp_path / "a" / "b") == [tmp_path / "a", tmp_path / "a" / "b"]
    assert make_directories(tmp_path / "a" / "b") == []


def _read_only(monkeypatch, *paths):
    """Make ``os.access`` in fileio answer as for a user without write permission on ``paths`` (tests run as root
    here, for whom every directory is writable)."""
    real = fileio.os.access
    blocked = {str(p) for p in paths}
    monkeypatch.setattr(fileio.os, "access", lambda p, mode: real(p, mode) and str(p) not in blocked)


def test_atomic_directory_refuses_a_read_only_directory_before_writing(tmp_path, monkeypatch):
    target = tmp_path / "tok"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("1")
    _read_only(monkeypatch, target)
    message = rf"cannot write {target}: no permission to write in {target}"
    with pytest.raises(WriteError, match=message), atomic_directory(target):
        pytest.fail("the body must not run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no .tok.old, no temporary directory
    assert (target / "a.txt").read_text() == "1"


def test_atomic_directory_puts_the_old_content_back_when_the_swap_fails(tmp_path, monkeypatch):
    target = tmp_path / "tok"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("1")
    real_replace, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", second_rename_fails)
    with pytest.raises(WriteError, match=rf"cannot write {target}: Input/output error"), atomic_directory(target) as d:
        (d / "b.txt").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]


def test_atomic_directory_names_itself_when_a_file_inside_fails(tmp_path, full_disk):
    target = tmp_path / "new" / "tok"
    full_disk(free=0)
    message = rf"^cannot write {target}: No space left on device$"
    with pytest.raises(WriteError, match=message), atomic_directory(target) as d, atomic_write(d / "v.json", "w") as f:
        f.write("{}")
    assert list(tmp_path.iterdir()) == []  # the parent it created is gone again


def test_check_writable(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    check_writable(tmp_path / "a" / "b" / "out.png")  # missing directories are fine: they will be made
    with pytest.raises(WriteError, match="f is a file, not a directory"):
        check_writable(tmp_path / "f" / "out.png")
    with pytest.raises(WriteError, match="it is a directory"):
        check_writable(tmp_path)
    _read_only(monkeypatch, tmp_path)
    with pytest.raises(WriteError, match=f"no permission to write in {tmp_path}"):
        check_writable(tmp_path / "a" / "out.png")


def test_atomic_write_follows_a_link_and_refuses_devices_and_pipes(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "data.bin").write_bytes(b"old")
    (tmp_path / "link.bin").symlink_to(tmp_path / "real" / "data.bin")
    with atomic_write(tmp_path / "link.bin") as f:
        f.write(b"new")
    assert (tmp_path / "link.bin").is_symlink() and (tmp_path / "real" / "data.bin").read_bytes() == b"new"
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(WriteError, match="it is not a regular file"), atomic_write(tmp_path / "pipe") as f:
        f.write(b"x")
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode)  # still a pipe, not replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.bin", "pipe", "real"]


def test_errors_of_the_body_that_are_not_writes_keep_their_type(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(FileNotFoundError), atomic_write(target) as f:
        f.write(b"partial")
        (tmp_path / "missing-input.txt").read_bytes()  # e.g. reading an input while writing the output
    with pytest.raises(WriteError, match=r"out\.txt: No space left on device"), atomic_write(target) as f:
        f.write(b"x")
        raise WriteError(target, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_the_first_error_is_told_when_closing_the_temporary_fails_too(tiny_tmpfs):
    """The body's error wins over the full disk that flushing the buffered rest on close runs into again."""
    disk = tiny_tmpfs(64)
    with pytest.raises(ValueError, match="the body's own"), atomic_write(disk / "out.bin", "wb") as f:
        f.write(b"x" * 1000)  # buffered: nothing reaches the disk yet
        with contextlib.suppress(OSError):
            (disk / "filler").write_bytes(b"\0" * (80 << 10))  # the disk is now full
        raise ValueError("the body's own error")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_the_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("CS336_LM_CACHE", str(tmp_path / "mine"))
    assert fileio.cache_directory() == tmp_path / "mine"
    monkeypatch.delenv("CS336_LM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fileio.cache_directory() == tmp_path / "xdg" / "cs336_lm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fileio.cache_directory() == tmp_path / "home" / ".cache" / "cs336_lm"
    monkeypatch.setattr(fileio.os.path, "expanduser", lambda path: path)  # no home directory at all
    assert fileio.cache_directory().is_absolute()


def test_an_output_apart_from_its_inputs(tmp_path):
    """``check_apart`` refuses an output that is, contains or lies inside an input, however it is spelt."""
    run = tmp_path / "runs" / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_1.pt").write_bytes(b"x")
    (tmp_path / "link").symlink_to(run)
    refused = {
        run: "it is the input",
        tmp_path / "link": "it is the input",
        run / "checkpoints" / ".." / ".": "it is the input",
        run / "hf": "lies inside the input",  # not there yet
        run / "new" / "deeper": "lies inside the input",
        tmp_path / "link" / "hf": "lies inside the input",
        tmp_path / "runs": "contains the input",
        tmp_path: "contains the input",
    }
    for out, reason in refused.items():
        with pytest.raises(WriteError, match=reason) as info:
            fileio.check_apart(out, None, run)
        assert str(info.value).startswith(f"cannot write {out}: ") and str(run) in str(info.value)
    (tmp_path / "runs" / "run2").mkdir()
    for out in (tmp_path / "runs" / "run2", tmp_path / "runs" / "run-hf", tmp_path / "elsewhere" / "x"):
        fileio.check_apart(out, run, tmp_path / "missing")  # a shared prefix is no parent; a missing input is skipped
    checkpoint = run / "checkpoints" / "step_1.pt"
    with pytest.raises(WriteError, match="contains the input"):
        fileio.check_apart(run / "checkpoints", checkpoint)
    fileio.check_apart(run / "tokenizer", checkpoint)
