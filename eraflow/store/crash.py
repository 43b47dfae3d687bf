"""Named points inside the stores' multi-step writes where a test can kill the process.

Set ``ERAFLOW_STORE_CRASH_AT=<point>`` in a child process's environment and that process kills
itself with SIGKILL when it reaches the point (no cleanup, no ``finally``: what a power cut or
``kill -9`` leaves). Tests use it to show that a write is atomic for readers and that the next
write cleans up. Unset (always, outside such tests), a point costs one comparison.

Points: ``linked:planned`` (a linked commit's first table is written into the new version, the
next not yet), ``linked:before-switch``, ``linked:after-switch`` (Parquet);
``replace_many:after-first`` (PostgreSQL, inside the transaction).
"""

from __future__ import annotations

import os
import signal

ENV = "ERAFLOW_STORE_CRASH_AT"
_AT = os.environ.get(ENV) or None


def crash_point(name: str) -> None:
    """Kill this process (SIGKILL) when ``ERAFLOW_STORE_CRASH_AT`` names ``name``."""
    if _AT is not None and name == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
