"""Giving freed memory back to the system between stages (glibc's allocator).

A stage frees hundreds of MB of NumPy and pandas temporaries, but glibc keeps freed memory in
its heaps (one per thread that allocated, up to eight per core): the process's resident size
then stays at its highest point for the rest of the run, and the next stage's peak is added on
top. Fewer heaps and a trim after each heavy stage keep the run's peak near one stage's own.

A full garbage collection walks every Python object: about 0.25 s with Prefect loaded, and it
was the top single function of a profiled run when made after every feature batch. It is
made only when memory calls for it: when the resident size, after the trim, grew by
:data:`COLLECT_GROWTH` since the last collection (cycles holding arrays are then freed).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading

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

#: A release collects garbage when the resident size grew by this many bytes since the last
#: collection (measured after the trim, so it is memory still held, not the heaps' free part).
COLLECT_GROWTH = 256 * 1024**2

_lock = threading.Lock()
_after_last_collection = 0  # resident bytes right after the last full collection


def resident_bytes() -> int:
    """The resident set size of this process (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _trim(libc: ctypes.CDLL | None) -> None:
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def release_memory(values: int | None = None, *, collect: bool = False) -> None:
    """Return the heaps' free memory to the system; collect garbage when memory calls for it.

    ``values``: how many values the stage handled (grid cells, say); below
    :data:`SMALL_STAGE_VALUES` nothing is done, at or above it a full collection is made (a
    stage's end, once a run). None (a mapped task's end): trim, then collect only when the
    resident size grew by :data:`COLLECT_GROWTH` since the last collection. ``collect``:
    always collect.
    """
    global _after_last_collection
    if values is not None and values < SMALL_STAGE_VALUES:
        return
    libc = _libc()
    _trim(libc)
    with _lock:
        rss = resident_bytes()  # 0: unknown, so collect
        calm = rss and rss - _after_last_collection <= COLLECT_GROWTH
        if calm and not collect and values is None:
            return
        gc.collect()
        _trim(libc)
        _after_last_collection = resident_bytes()
