"""One retry policy: only failures that may not happen again are retried.

Transient: a lost or refused connection, a serialization failure, a lock or statement
timeout, a CUDA out-of-memory error, a worker lost mid-run (``TransientError``). Everything
else (bad input, a missing block, a read-only folder, a row PostgreSQL cannot hold, a bug)
fails at once: retrying it would only repeat it.
"""

from __future__ import annotations

from eraflow.common.errors import EraflowError, TransientError

_PG_TRANSIENT = ("OperationalError",)
"""psycopg's class for connection loss, serialization failures, lock and statement timeouts."""


def is_device_oom(exc: BaseException) -> bool:
    """True for a GPU out-of-memory error (CuPy's OutOfMemoryError or a CUDA malloc failure).

    Matched by name so CPU hosts never import CuPy; the caller retries the batch on the CPU.
    """
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or (
        name in {"CUDARuntimeError", "CUDADriverError", "MemoryError"}
        and "memory" in text
        and ("cuda" in text or "device" in text)
    )


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
