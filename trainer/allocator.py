"""Keep freed memory in the process instead of handing it back to the OS.

glibc serves large allocations with fresh ``mmap`` pages and unmaps them when they are freed, so a
training step or a synthesis, which allocates and frees hundreds of MB of activations on every call,
pays a page fault (and the kernel zeroing the page) for every 4 KiB it touches, every time. On the
2-core VM we benchmark on, that was two thirds of the time of a 60 s V2 synthesis (docs/benchmarks.md).
With mmap off and trimming off, freed blocks go back to the heap and are reused; the cost is that
the process keeps its peak memory reserved until it exits.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed memory (once per process); False where there is no glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
