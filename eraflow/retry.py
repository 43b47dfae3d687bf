"""One retry policy: only failures that may not happen again are retried.

Transient: a lost or refused connection, a serialization failure, a lock or statement
timeout, a CUDA out-of-memory error, a worker lost mid-run (``TransientError``). Everything
else (bad input, a missing block, a read-only folder, a row PostgreSQL cannot hold, a bug)
fails at once: retrying it would only repeat it.
"""

from __future__ import annotations

from eraflow.errors import EraflowError, TransientError
from eraflow.features.arrays import is_device_oom

_PG_TRANSIENT = ("OperationalError",)
"""psycopg's class for connection loss, serialization failures, lock and statement timeouts."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying what raised ``exc`` may succeed."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, EraflowError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if is_device_oom(exc):
        return True
    module = type(exc).__module__
    return module.startswith("psycopg") and any(
        base.__name__ in _PG_TRANSIENT for base in type(exc).__mro__
    )
