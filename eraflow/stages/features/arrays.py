"""Array-module selection: NumPy on CPU, CuPy on GPU, one implementation over ``xp``.

CuPy is imported lazily (never at module import) so that this package imports on hosts without
CUDA. Segment reductions that NumPy and CuPy spell differently live here, so the calculators
stay written once over ``xp``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from eraflow.common.errors import ConfigError

Device = Literal["auto", "gpu", "cpu"]
Engine = Literal["numpy", "cupy"]


def gpu_available() -> bool:
    """Return True when CuPy imports and sees at least one CUDA device.

    Any exception (no CuPy, no driver, a broken CUDA runtime) means "no GPU": the caller falls
    back to NumPy instead of failing.
    """
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def select_array_module(device: Device = "auto") -> tuple[ModuleType, Engine]:
    """Pick the array module for one call.

    Parameters
    ----------
    device
        ``"auto"`` uses the GPU when :func:`gpu_available`, else NumPy; ``"gpu"`` requires a GPU
        and raises :class:`~eraflow.common.errors.ConfigError` without one; ``"cpu"`` forces NumPy.

    Returns
    -------
    tuple
        ``(xp, engine)`` where ``engine`` is ``"numpy"`` or ``"cupy"`` (the value written to the
        ``engine`` column of the feature table).
    """
    if device not in ("auto", "gpu", "cpu"):
        raise ConfigError(f"device must be 'auto', 'gpu' or 'cpu', got {device!r}")
    if device == "cpu":
        return np, "numpy"
    if gpu_available():
        import cupy

        return cupy, "cupy"
    if device == "gpu":
        raise ConfigError(
            "device='gpu' was requested but no CUDA device is usable (CuPy missing or no GPU); "
            "use device='auto' or 'cpu'"
        )
    return np, "numpy"


def to_host(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array (copies from the GPU when ``a`` is a CuPy array)."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    if callable(get):
        return np.asarray(get())
    return np.asarray(a)


def is_numpy(xp: ModuleType) -> bool:
    """Return True when ``xp`` is NumPy."""
    return xp is np


def segment_ids(xp: ModuleType, offsets: Any, total: int) -> Any:
    """Segment id of each element of a flat array laid out by ``offsets`` (len nseg + 1)."""
    return xp.searchsorted(offsets[1:], xp.arange(total), side="right")


def seg_sum(xp: ModuleType, v: Any, seg: Any, nseg: int) -> Any:
    """Sum of ``v`` per segment id (float64; empty segments give 0; NaN propagates)."""
    if v.dtype == bool:
        v = v.astype(np.float64)
    return xp.bincount(seg, weights=v, minlength=nseg)[:nseg]


def seg_broadcast(xp: ModuleType, v: Any, seg: Any, lengths: Any) -> Any:
    """``v[seg]``: a per-segment value for every element of a flat array laid out by segment.

    ``seg`` must be sorted (segments contiguous, in order) with ``lengths`` elements each. On
    NumPy, ``repeat`` over the lengths takes about a tenth of the gather's time; CuPy's
    ``repeat`` takes no device array of repeats, so it gathers.
    """
    if is_numpy(xp):
        return np.repeat(v, lengths)
    return v[seg]


def seg_count(xp: ModuleType, mask: Any, seg: Any, nseg: int) -> Any:
    """Number of True values of ``mask`` per segment id (float64)."""
    return xp.bincount(seg[mask], minlength=nseg)[:nseg].astype(np.float64)


def seg_max(xp: ModuleType, v: Any, seg: Any, nseg: int, empty: float = -np.inf) -> Any:
    """Maximum of ``v`` per segment id; segments without elements get ``empty``.

    ``v`` must not contain NaN (callers mask NaN first): CUDA atomics do not order NaN the
    way NumPy does.
    """
    out = xp.full(nseg, -np.inf, dtype=np.float64)
    if v.size:
        if is_numpy(xp):
            np.maximum.at(out, seg, v)
        else:
            import cupyx

            cupyx.scatter_max(out, seg, v.astype(np.float64))
    if empty != -np.inf:
        cnt = xp.bincount(seg, minlength=nseg)[:nseg]
        out = xp.where(cnt > 0, out, empty)
    return out


def seg_min(xp: ModuleType, v: Any, seg: Any, nseg: int, empty: float = np.inf) -> Any:
    """Minimum of ``v`` per segment id; segments without elements get ``empty``."""
    return -seg_max(xp, -v, seg, nseg, empty=-empty)


def stable_argsort(xp: ModuleType, a: Any) -> Any:
    """Stable argsort on either module (CuPy's argsort is always stable and rejects ``kind``)."""
    if is_numpy(xp):
        return np.argsort(a, kind="stable")
    return xp.argsort(a)
