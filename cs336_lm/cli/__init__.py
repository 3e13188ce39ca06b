"""Command-line entry points: each parses arguments, validates them and calls one library function.

``run_main`` gives every command the same behaviour for bad input and a failing system: one ``error: …`` line
on stderr and exit status 2 instead of a traceback, warnings as one ``warning: …`` line each, and a closed pipe
on stdout (``lm-generate … | head``) ending the command quietly. ``add_threads_option`` and ``cpu_threads`` give the
commands that compute (``lm-generate``, ``lm-serve``, ``lm-perplexity``, ``lm-compare``) ``--threads``, by
``lm-train``'s rule (``cs336_lm.run.threads``).
"""

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cs336_lm.errors import LMError

if TYPE_CHECKING:
    from cs336_lm.run.threads import ThreadChoice

USAGE_ERROR = 2
BROKEN_PIPE = 1
STDOUT = "standard output"  # the file name a write error on stdout is reported with


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default, except where it would say nothing: the help already names the
    default, the option is required or unset by default (its help says what unset means), or it is an on/off flag."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        flag = isinstance(action.const, bool) and action.nargs == 0
        if "default" in text or action.required or action.default is None or flag:
            return text
        return super()._get_help_string(action)


THREADS_HELP = (
    "torch's CPU threads (with CUDA still only the CPU's): auto = $OMP_NUM_THREADS if set, else one per core other "
    "work leaves idle now (lm-train's rule), or N (default: auto)"
)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N|auto``, checked when the command enters ``cpu_threads``."""
    parser.add_argument("--threads", default="auto", metavar="N|auto", help=THREADS_HELP)


@contextlib.contextmanager
def cpu_threads(spec: str) -> Iterator["ThreadChoice"]:
    """torch's intra-op threads set by ``--threads`` for the body, and put back after it (a script or test that
    calls a command's ``main`` twice finds torch as it was). ``auto`` never exceeds torch's own count (the physical
    cores, or ``OMP_NUM_THREADS``); a bad ``spec`` is a ``ConfigError`` before anything is set."""
    import torch

    from cs336_lm.run.threads import choose_threads

    before = torch.get_num_threads()
    choice = choose_threads(spec, option="--threads", ceiling=before)
    torch.set_num_threads(choice.count)
    try:
        yield choice
    finally:
        torch.set_num_threads(before)


def run_main(fn: Callable[[], int | None]) -> int:
    """Call ``fn`` and map user-facing failures to one stderr line and an exit status.

    ``LMError`` (our own), any ``OSError`` (a path the user gave, a full disk, standard output that cannot be
    written), ``MemoryError`` and torch's out-of-memory errors (CPU, CUDA, MPS) are exit status 2; a closed
    standard output is 1 and silent; ``KeyboardInterrupt`` is 130. Any other error is a bug and keeps its traceback.
    """
    with _one_line_warnings(), _named_stdout():
        try:
            status = fn() or 0
            sys.stdout.flush()  # a full disk behind stdout shows here, not as a traceback at exit
            return status
        except BrokenPipeError:  # stdout closed early, e.g. piped into `head`: stop quietly
            _discard_stdout()
            return BROKEN_PIPE
        except LMError as e:
            print(f"error: {e}", file=sys.stderr)
            return USAGE_ERROR
        except OSError as e:
            if e.filename == STDOUT:
                _discard_stdout()
            print(f"error: {_describe_os_error(e)}", file=sys.stderr)
            return USAGE_ERROR
        except MemoryError as e:  # e.g. NumPy asked for an array far larger than memory (a huge batch size)
            print(f"error: out of memory{f': {e}' if str(e) else ''}", file=sys.stderr)
            return USAGE_ERROR
        except RuntimeError as e:  # torch's allocators raise RuntimeError subclasses, or a bare one on a CPU
            reason = _torch_out_of_memory(e)
            if reason is None:
                raise
            print(f"error: out of memory: {reason}", file=sys.stderr)
            return USAGE_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _torch_out_of_memory(e: RuntimeError) -> str | None:
    """What a torch allocation failure says, cut to one line (``you tried to allocate 1099511627776 bytes``), or
    None when ``e`` is some other error. torch is not imported here: an error from it means it is loaded."""
    torch = sys.modules.get("torch")
    text = str(e)
    cpu = "DefaultCPUAllocator: can't allocate memory: "
    if cpu in text:  # "[enforce fail at alloc_cpu.cpp:…] err == 0. DefaultCPUAllocator: can't allocate memory: …"
        return text.split(cpu, 1)[1].split(". Error code")[0].strip()
    if (torch is not None and isinstance(e, torch.OutOfMemoryError)) or "MPS backend out of memory" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        return first.split(". GPU ")[0]  # "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total …"
    return None


def _describe_os_error(e: OSError) -> str:
    """``No such file or directory: data/x.txt``, or just the cause when the error names no file."""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{reason}: {e.filename}" if e.filename else reason


class _NamedStdout:
    """``sys.stdout`` whose write errors name it (an ``OSError`` from a stream carries no file name), so that a
    full disk behind a redirected stdout reads ``error: No space left on device: standard output``."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        self._named(self._stream.flush)

    @staticmethod
    def _named(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), STDOUT) from None


@contextlib.contextmanager
def _named_stdout() -> Iterator[None]:
    original = sys.stdout
    sys.stdout = _NamedStdout(original)
    try:
        yield
    finally:
        sys.stdout = original


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of unwritable text cannot fail again."""
    with contextlib.suppress(OSError, ValueError):  # no real file descriptor (e.g. captured by a test)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show warnings as ``warning: MESSAGE`` (without the source line Python adds) while a command runs."""
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = original


def check_output_apart(
    out: os.PathLike | str | None, run: os.PathLike | str | None, *inputs: os.PathLike | str | None
) -> None:
    """``WriteError`` when the output file ``out`` would replace what the command reads: the run's config, metrics,
    tokenizer or checkpoints (``run``, a run directory or a checkpoint file) or one of ``inputs`` (paths; None
    skipped). A new file inside the run directory, beside what it reads, is fine."""
    if out is None:
        return
    from pathlib import Path

    from cs336_lm.fileio import check_apart
    from cs336_lm.run import RunDir

    read: list = [Path(p) for p in inputs if p is not None]
    if run is not None:
        read += RunDir(run).read_paths() if Path(run).is_dir() else [Path(run)]
    check_apart(out, *read)
