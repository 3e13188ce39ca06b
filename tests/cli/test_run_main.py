"""``run_main``: every command's failures end as one line on stderr with a fixed exit status, never a traceback."""

import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cs336_lm.cli import run_main
from cs336_lm.errors import DataError, WriteError

REPO = Path(__file__).resolve().parents[2]


def test_our_errors_and_os_errors_are_one_line_and_exit_2(capsys):
    def fails(exc):
        def fn():
            raise exc

        return fn

    cases = [
        (DataError("input x.txt is not UTF-8 text"), "error: input x.txt is not UTF-8 text\n"),
        (WriteError("out.npy", "No space left on device"), "error: cannot write out.npy: No space left on device\n"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "x.txt"),
            "error: No such file or directory: x.txt\n",
        ),
        (OSError(errno.EIO, "Input/output error"), "error: Input/output error\n"),
        (MemoryError("Unable to allocate 745. GiB"), "error: out of memory: Unable to allocate 745. GiB\n"),
    ]
    for exc, line in cases:
        assert run_main(fails(exc)) == 2
        assert capsys.readouterr().err == line


def test_warnings_read_as_one_line_while_a_command_runs():
    shown = []
    run_main(lambda: shown.append(warnings.formatwarning("checkpoint x.pt carries no digest", UserWarning, "f.py", 1)))
    assert shown == ["warning: checkpoint x.pt carries no digest\n"]
    assert warnings.formatwarning("x", UserWarning, "f.py", 1) != "warning: x\n"  # put back afterwards


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cs336_lm.cli.accounting", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_standard_output_on_a_full_disk_is_one_line():
    with open("/dev/full", "w") as full:
        result = subprocess.run(_command("--all"), stdout=full, stderr=subprocess.PIPE, text=True, env=_env())
    assert result.returncode == 2
    assert result.stderr == "error: No space left on device: standard output\n"


def test_a_closed_pipe_ends_the_command_quietly():
    # a command printing far more than a pipe holds, read like `… | head -c 1`
    code = "import sys; from cs336_lm.cli import run_main; sys.exit(run_main(lambda: print('x' * 10_000_000)))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.read(1)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 1
    assert proc.stderr.read() == b""


def test_torch_out_of_memory_is_one_line_and_other_runtime_errors_pass(capsys):
    import torch

    def allocate():
        torch.empty(2**48)  # a petabyte: refused at once, on any machine

    assert run_main(allocate) == 2
    err = capsys.readouterr().err
    assert err == "error: out of memory: you tried to allocate 1125899906842624 bytes\n", err

    def cuda():
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.2 GiB "
            "is free. Including non-PyTorch memory, this process has 78 GiB memory in use."
        )

    assert run_main(cuda) == 2
    assert capsys.readouterr().err == "error: out of memory: CUDA out of memory. Tried to allocate 2.00 GiB\n"

    def bug():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug keeps its traceback
        run_main(bug)
