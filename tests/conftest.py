"""Test-wide setup. Imports only the standard library and pytest: GPU tests must run on a
machine without Prefect, so nothing here may import it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GREENHOUSE = REPO.parent / "shared" / "data" / "greenhouse"

# Prefect (where a test uses it) runs offline, in a throwaway home, never touching ~/.prefect.
_home = Path(tempfile.mkdtemp(prefix="eraflow-tests-prefect-"))
for key, value in {
    "PREFECT_HOME": str(_home),
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_home / "results"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}.items():
    os.environ.setdefault(key, value)


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In a ``-m gpu`` run, collect only modules that hold GPU tests.

    The GPU test machine has CuPy, NumPy, pandas, SciPy and pytest but not Prefect, pydantic,
    tsfresh or psycopg; the other modules would fail to import there before ``-m`` deselects.
    """
    if config.getoption("markexpr", "") != "gpu" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return "mark.gpu" not in collection_path.read_text(encoding="utf-8")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests without CUDA and real-data tests without ../shared/data/greenhouse."""
    has_cuda = None
    for item in items:
        if item.get_closest_marker("gpu"):
            if has_cuda is None:
                has_cuda = cuda_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="no CUDA device (CuPy sees none)"))
        if item.get_closest_marker("realdata") and not GREENHOUSE.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"real exports absent: {GREENHOUSE}"))
    # Files with slow tests first: with two workers taking whole files (make test), the long
    # ones then start at once and the short ones fill the gaps, instead of one long file
    # running alone at the end.
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def greenhouse_dir() -> Path:
    """The real Danish exports (../shared/data/greenhouse beside the repository)."""
    if not GREENHOUSE.is_dir():
        pytest.skip(f"real exports absent: {GREENHOUSE}")
    return GREENHOUSE


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API (temporary SQLite server), started once per session on first use.

    Prefect is imported here, not at module level, so GPU-only machines never need it.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
