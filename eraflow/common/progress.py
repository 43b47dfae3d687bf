"""Progress of long work, told to whoever listens in this process (Prefect-free).

A stage reports ``(stage, done, total, unit, label)``; the Prefect task layer turns it into a
progress artifact in the UI, and the ``eraflow`` command into a bar on the terminal. The two
never know each other: both listen here. Listeners are process-wide because a run's tasks
report from worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One progress report: ``done`` of ``total`` units of ``stage``'s work (-1: unknown)."""

    stage: str
    done: int
    total: int
    unit: str
    label: str = ""

    @property
    def percent(self) -> float:
        """0-100; 0 while the total is unknown (``total < 0``), 100 for nothing to do."""
        if self.total < 0:
            return 0.0
        return 100.0 * min(self.done, self.total) / self.total if self.total else 100.0

    @property
    def text(self) -> str:
        """``features: 12 of 40 batches`` (``ingest: 120000 rows`` while the total is unknown)."""
        if self.total < 0:
            return f"{self.stage}: {self.done} {self.unit}"
        return f"{self.stage}: {self.done} of {self.total} {self.unit}"


Listener = Callable[[Step], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def report(step: Step) -> None:
    """Tell every listener; a failing listener never fails the work."""
    with _lock:
        current = list(_listeners)
    for listener in current:
        with suppress(Exception):  # progress is advisory: the work goes on
            listener(step)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with every step reported while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
