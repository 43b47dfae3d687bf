"""The one way eraflow compiles a kernel with numba: cached on disk, and without the GIL.

Without the GIL the pipeline's feature and era threads run compiled kernels side by side (a
kernel holding it made the other thread wait); the on-disk cache spares each new process the
compile (seconds per kernel).
"""

from __future__ import annotations

from typing import Any

import numba

__all__ = ["jit"]


def jit(**options: Any) -> Any:
    """``numba.njit`` with eraflow's policy (``cache=True, nogil=True``) plus ``options``."""
    return numba.njit(cache=True, nogil=True, **options)
