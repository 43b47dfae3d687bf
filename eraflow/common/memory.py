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


#: Below this many values handled, a stage skips the release: a full garbage collection walks
#: every Python object (about 0.25 s with Prefect loaded) and a small stage frees little; it
#: was a fifth of a weekly backfill chunk's time.
SMALL_STAGE_VALUES = 5_000_000


def release_memory(values: int | None = None) -> None:
    """Collect garbage and return the heaps' free memory to the system.

    ``values``: how many values the stage handled (grid cells, say); below
    :data:`SMALL_STAGE_VALUES` nothing is done. None: always release.
    """
    if values is not None and values < SMALL_STAGE_VALUES:
        return
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
