"""Bounded, re-entrant file locks that say who holds them.

A store lock is an exclusive ``flock`` on a small file, shared by the threads and processes of
one host. It is taken without blocking and polled until ``lock_timeout`` seconds have passed,
so a stopped or stuck writer never makes a run wait forever: the waiter then raises
:class:`LockTimeoutError` (transient, so the task layer retries it like PostgreSQL's
``LockNotAvailable``), naming the lock file and its holder.

The holder writes who it is (pid, host, command, since when) into the lock file after
acquiring it and clears it before releasing it; a waiter reads that record to say who holds
the lock. A record whose process is gone (same host, pid not running) cannot be the holder (a
dead process holds no ``flock``): it is reported as stale, the holder found in ``/proc/locks``
when possible, and the next holder overwrites it.

Within a process, threads first queue on a ``threading.Lock`` per file (a wait without
polling), and a thread that already holds a lock may take it again (re-entrant), so nested
sections of one owner never deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eraflow.common.errors import TransientError

logger = logging.getLogger(__name__)

_POLL_FIRST = 0.002
_POLL_MAX = 0.1


class LockTimeoutError(TransientError):
    """A store lock was not granted within ``lock_timeout`` (retried: its holder may finish).

    A ``TransientError`` (the task layer retries it, as PostgreSQL's ``LockNotAvailable``),
    deliberately not a ``TimeoutError``: Prefect reports those as the task's own timeout.

    Attributes
    ----------
    lock
        The lock file (or, for PostgreSQL, the advisory lock's name).
    holder
        Who holds it, in words, when known.
    """

    def __init__(self, message: str, *, lock: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.lock = lock
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: what the holder wrote into the lock file."""

    pid: int
    host: str
    command: str
    since: str
    thread: str = ""

    def describe(self) -> str:
        """``pid 1234 on host x since 2026-12-04 15:00:00 UTC (python -m flows.cli run)``."""
        return f"pid {self.pid} on host {self.host} since {self.since} ({self.command})"

    def is_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _command(argv: list[str] | None = None) -> str:
    parts = argv if argv is not None else list(getattr(sys, "orig_argv", sys.argv))
    joined = " ".join(Path(parts[0]).name if i == 0 else p for i, p in enumerate(parts))
    text = " ".join(joined.split()) or "?"
    return text if len(text) <= 160 else text[:157] + "..."


def _record() -> bytes:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "thread": threading.current_thread().name,
    }
    return json.dumps(holder).encode()


def read_holder(path: Path) -> Holder | None:
    """The holder record in lock file ``path`` (None when empty, absent or unreadable)."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if raw.strip() else None
        if not isinstance(data, dict):
            return None
        return Holder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            command=str(data.get("command", "?")),
            since=str(data.get("since", "?")),
            thread=str(data.get("thread", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _flock_pids(path: Path) -> list[int]:
    """Processes holding a ``flock`` on ``path``'s inode, from ``/proc/locks`` (Linux)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    inode = f":{st.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" ("->" marks waiters)
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5].endswith(inode) and fields[4].isdigit():
            pids.append(int(fields[4]))
    return sorted(set(pids))


def _process_command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return _command([p.decode(errors="replace") for p in raw.split(b"\0") if p]) if raw else "?"


def describe_holder(path: Path) -> str:
    """Who holds lock file ``path``, in words (best effort; for messages only)."""
    holder = read_holder(path)
    if holder is not None and not holder.is_gone():
        mine = holder.pid == os.getpid() and holder.host == socket.gethostname()
        return holder.describe() + (
            f", another thread of this process ({holder.thread})" if mine else ""
        )
    found = [p for p in _flock_pids(path) if p > 0]
    live = (
        f"pid {found[0]} on host {socket.gethostname()} ({_process_command(found[0])})"
        if found
        else "a process that left no record"
    )
    if holder is not None:
        return f"{live}; the record of {holder.describe()} is stale (that process is gone)"
    return live


class _Local(threading.local):
    def __init__(self) -> None:
        self.held: dict[str, int] = {}


_local = _Local()
_queues: dict[str, threading.Lock] = {}
_queues_guard = threading.Lock()


def _reset_after_fork() -> None:
    """A forked child holds none of its parent's locks (its threads are gone)."""
    global _local, _queues, _queues_guard
    _local = _Local()
    _queues = {}
    _queues_guard = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _queue(key: str) -> threading.Lock:
    with _queues_guard:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = threading.Lock()
        return queue


def _timeout_error(path: Path, timeout: float, what: str) -> LockTimeoutError:
    holder = describe_holder(path)
    subject = f"{what} ({path})" if what else str(path)
    return LockTimeoutError(
        f"store lock {subject} not granted: held by {holder}; stop that process or wait; "
        f"lock_timeout {timeout:g} s",
        lock=str(path),
        holder=holder,
    )


@contextmanager
def file_lock(path: Path, *, timeout: float, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on file ``path`` (made when absent) for the ``with`` block.

    Parameters
    ----------
    path
        The lock file; its folder is created when absent.
    timeout
        Seconds to wait for it at most; then :class:`LockTimeoutError` names the holder.
    what
        What the lock guards, for messages (``"grid of kj_no3"``).

    Re-entrant per thread: a thread that holds ``path`` enters at once.
    """
    key = os.path.abspath(path)
    held = _local.held
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    deadline = time.monotonic() + max(timeout, 0.0)
    queue = _queue(key)
    if not queue.acquire(blocking=False):
        logger.info("waiting for store lock %s (held by another thread of this process)", path)
        if not queue.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise _timeout_error(path, timeout, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _acquire(fd, path, deadline, timeout, what)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _record(), 0)
                held[key] = 1
                try:
                    yield
                finally:
                    del held[key]
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, 0)  # before unlocking: never wipe the next holder's
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        queue.release()


def _acquire(fd: int, path: Path, deadline: float, timeout: float, what: str) -> None:
    """``flock`` without blocking, polled until ``deadline``; logs the holder once."""
    pause = _POLL_FIRST
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if told:
                logger.info("store lock %s granted", path)
            return
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout_error(path, timeout, what)
        if not told:
            logger.warning(
                "waiting up to %g s for store lock %s%s, held by %s",
                timeout,
                path,
                f" ({what})" if what else "",
                describe_holder(path),
            )
            told = True
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)
