"""Shared test helpers: the real-text fixtures beside the checkout, and the Triton interpreter switch.

Fixtures live in ``../shared/fixtures`` (or wherever ``CS336_FIXTURES`` points); tests reach them only
through ``shared_fixture`` and are skipped, not failed, when the folder is absent.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = Path(os.environ.get("CS336_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# Triton kernels run on CPU tensors through the interpreter when there is no GPU. The variable must be
# set before any ``@triton.jit`` decorator runs, i.e. before cs336_lm.kernels.* is first imported.
if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
def one_torch_thread():
    """Run a test on one torch intra-op thread, restoring the count after.

    Tiny models and toy tensors gain nothing from a second thread, and on a shared, oversubscribed CPU the
    threads of one op wait for each other: these tests run many times faster on one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
