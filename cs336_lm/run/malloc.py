"""Keep freed CPU memory for reuse: glibc returns every allocation of over 32 MB to the kernel when it is freed.

A CPU training step allocates the same large buffers every step (the logits and their gradient, attention scores,
activations), and glibc serves each one of over 32 MB with a fresh ``mmap`` and gives it back with ``munmap``, so
every step the kernel faults in and zeroes those pages again — a cost that grows with the buffers, not the
arithmetic (measured in docs/bench/train.md: 11–15% of a tinystories-17m step). ``reuse_freed_memory`` asks glibc
(``mallopt``) to take large blocks from its heap and never trim it, so once the heap has grown to a step's
working set (a few steps) every step reuses pages already faulted in. The process then holds on to its peak
memory until it exits, which a training process reaches every step anyway. Where the C library is not glibc
(macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int): trim only a free top of over 2 GiB


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "mallopt"):
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


_applied = False


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory (no ``mmap`` per large block, no trimming); True when it did (or already had).

    Process-wide and for the rest of the process: there is no undoing it that restores glibc's adaptive defaults.
    """
    global _applied
    libc = _glibc()
    if libc is None:
        return False
    if not _applied:
        _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _applied
