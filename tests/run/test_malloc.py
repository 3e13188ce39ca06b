"""``reuse_freed_memory``: after it, a freed large block is reused without faulting its pages in again."""

import platform
import subprocess
import sys

import pytest

from cs336_lm.run import malloc

PROBE = """
import resource, sys, torch
from cs336_lm.run.malloc import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
faults = []
for _ in range(8):  # 64 MiB, every page written, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(16 * 2**20, dtype=torch.float32)
    block.fill_(1.0)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[4:]))  # the heap grows for the first few blocks (small objects pin freed ones)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_large_blocks_are_reused_instead_of_faulted_in_again():
    applied, reused = _faults("reuse")
    _, default = _faults("default")
    assert applied == "True"
    assert default > 4 * 16_000  # glibc's default: each 64 MiB block is a fresh mmap, 16,384 pages faulted in
    assert reused < default / 10  # kept: once the heap has grown to the working set, blocks come back faulted in


def test_without_glibc_nothing_changes(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", False)
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    assert malloc.reuse_freed_memory() is False
