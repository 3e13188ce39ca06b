"""Shared test helpers: the real-text fixtures beside the checkout, the Triton interpreter switch, where
kernel tests run, a disk that fills up (``full_disk``: injected; ``tiny_tmpfs``: a real one) and damage to a
checkpoint that its zip structure does not show (``flip_tensor_bytes``).

Fixtures live in ``../shared/fixtures`` (or wherever ``CS336_FIXTURES`` points); tests reach them only
through ``shared_fixture`` and are skipped, not failed, when the folder is absent.

``target`` runs a kernel test three ways: on CPU tensors through the Triton interpreter (the default run
without a GPU), natively on CUDA, and on CUDA inside ``torch.compile`` (both ``gpu``-marked). Tolerances
are per dtype: the kernels accumulate in fp32, so the error is about one rounding of the output dtype.
"""

import errno
import os
import struct
import subprocess
import types
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(os.environ.get("CS336_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


def _cuda_available() -> bool:
    return torch.cuda.is_available()


# Triton kernels run on CPU tensors through the interpreter when there is no GPU. The variable must be
# set before any ``@triton.jit`` decorator runs, i.e. before cs336_lm.kernels.* is first imported.
if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def pytest_configure(config) -> None:
    """Tests (and the commands they start) keep what the toolkit caches out of the user's own cache directory."""
    import tempfile

    if not os.environ.get("CS336_LM_CACHE"):
        os.environ["CS336_LM_CACHE"] = tempfile.mkdtemp(prefix="cs336_lm-test-cache-")


# (atol, rtol) of a result in this dtype against an fp32 reference
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1e-2, 1.6e-2),
}


@dataclass(frozen=True)
class Target:
    device: str
    compiled: bool

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` itself, or ``fn`` under ``torch.compile`` for the compiled target."""
        return torch.compile(fn) if self.compiled else fn


@pytest.fixture(
    params=[
        pytest.param(
            Target("cpu", False),
            id="interpreter",
            marks=pytest.mark.skipif(not INTERPRETING, reason="CUDA present: kernels compile natively"),
        ),
        pytest.param(Target("cuda", False), id="cuda", marks=pytest.mark.gpu),
        pytest.param(Target("cuda", True), id="cuda-compile", marks=pytest.mark.gpu),
    ]
)
def target(request) -> Target:
    if request.param.compiled:
        torch._dynamo.reset()
    return request.param


@pytest.fixture
def assert_close() -> Callable:
    """``assert_close(actual, expected, dtype, scale=1)``: ``actual`` must have ``dtype`` and be within that
    dtype's tolerance (times ``scale``, for sums over many rows) of the fp32 ``expected``."""

    def check(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
        atol, rtol = TOLERANCES[dtype]
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.float().cpu(), expected.float().cpu(), atol=atol * scale, rtol=rtol * scale)

    return check


@pytest.fixture
def shared_fixture():
    """``shared_fixture("corpus.en")`` -> Path to that fixture file; skips the test when it is absent."""

    def get(name: str) -> Path:
        path = FIXTURES_DIR / name
        if not path.is_file():
            pytest.skip(f"fixture {name} not found in {FIXTURES_DIR}")
        return path

    return get


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Run a test on one torch intra-op thread, restoring the count after; a command it runs with ``--threads auto``
    takes one too (``OMP_NUM_THREADS=1``, which ``auto`` keeps without measuring the machine).

    Tiny models and toy tensors gain nothing from a second thread, and on a shared, oversubscribed CPU the
    threads of one op wait for each other: these tests run many times faster on one.
    """
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Disk:
    """A byte budget shared by every file opened through ``_Disk.wrap``; a write past it stores what still fits
    and then fails, like a write to a full disk."""

    def __init__(self, free: int):
        self.free = free

    def wrap(self, f):
        disk = self

        class Filling:
            def write(self, data):
                if len(data) > disk.free:
                    f.write(data[: disk.free])
                    disk.free = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.free -= len(data)
                return f.write(data)

            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Filling()


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(free=0)``: from now on every file the package writes (through ``cs336_lm.fileio``, the
    metrics log and the token-file parts) fails with ENOSPC once ``free`` more bytes are written."""

    def fill(free: int = 0) -> _Disk:
        import cs336_lm.data.prepare
        import cs336_lm.fileio
        import cs336_lm.training.metrics

        disk = _Disk(free)
        real_os = cs336_lm.fileio.os
        fake_os = types.SimpleNamespace(**{k: getattr(real_os, k) for k in dir(real_os) if not k.startswith("__")})
        fake_os.fdopen = lambda fd, *args, **kwargs: disk.wrap(real_os.fdopen(fd, *args, **kwargs))
        monkeypatch.setattr(cs336_lm.fileio, "os", fake_os)

        def filling_open(file, mode="r", *args, **kwargs):
            f = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by the wrapper)
            return disk.wrap(f) if any(c in mode for c in "wax") else f

        for module in (cs336_lm.training.metrics, cs336_lm.data.prepare):
            monkeypatch.setattr(module, "open", filling_open, raising=False)
        return disk

    return fill


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """``tiny_tmpfs(kib)``: a directory on a freshly mounted tmpfs of that size (skipped where mounting is not
    permitted, i.e. without root); unmounted after the test."""
    mounted = []

    def mount(kib: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        try:
            command = ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)]
            result = subprocess.run(command, capture_output=True)
        except FileNotFoundError:
            pytest.skip("no mount command here")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def flip_tensor_bytes():
    """``flip_tensor_bytes(path)``: invert one bit in each of 4 bytes in the middle of the largest tensor stored in
    the ``torch.save`` zip at ``path``, in place: the archive stays intact (torch.load does not check the entry
    CRCs), only the values change. Returns the entry's name."""

    def flip(path: Path, count: int = 4) -> str:
        with zipfile.ZipFile(path) as archive:
            entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        with open(path, "r+b") as f:
            f.seek(entry.header_offset)
            header = f.read(30)  # the local file header; its name and extra field come next, then the data
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            where = entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2
            f.seek(where)
            data = f.read(count)
            f.seek(where)
            f.write(bytes(b ^ 0x10 for b in data))
        return entry.filename

    return flip


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
