"""Giving freed memory back to the system between stages (glibc's allocator).

A stage frees hundreds of MB of NumPy and pandas temporaries, but glibc keeps freed memory in
its heaps (one per thread that allocated, up to eight per core): the process's resident size
then stays at its highest point for the rest of the run, and the next stage's peak is added on
top. Fewer heaps and a trim after each heavy stage keep the run's peak near one stage's own.
"""

from __future__ import annotations

import ctypes
import gc

M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def limit_heaps(count: int = 2) -> None:
    """At most ``count`` malloc heaps for the process (call early, before threads allocate)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, count)


def release_memory() -> None:
    """Collect garbage and return the heaps' free memory to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
