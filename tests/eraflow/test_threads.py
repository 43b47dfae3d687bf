"""The stages' processes run BLAS on one thread unless whoever started them chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import REPO

PROBE = """
import json, numpy, scipy.linalg
from threadpoolctl import threadpool_info
from eraflow.common.threads import one_blas_thread
before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
one_blas_thread()
import scipy.signal  # loaded after the call: reads the environment
import os
print(json.dumps({"before": before, "after": [
    p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
    "omp": os.environ.get("OMP_NUM_THREADS")}))
"""


def probe(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean | env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_an_unset_thread_count_becomes_one_thread_in_every_blas() -> None:
    threads = probe()
    assert threads["after"] and set(threads["after"]) == {1}
    assert threads["omp"] == "1"
    if (os.cpu_count() or 1) > 1:
        assert max(threads["before"]) > 1  # OpenBLAS's own default: a thread per core


def test_a_thread_count_the_user_set_is_kept() -> None:
    threads = probe(OPENBLAS_NUM_THREADS="2")
    assert set(threads["after"]) == {min(2, os.cpu_count() or 1)}
    assert threads["omp"] is None  # nothing else set: the choice was the user's


def test_every_compiled_kernel_releases_the_gil_and_is_cached() -> None:
    """The pipeline's two threads run kernels side by side only if none holds the GIL."""
    import importlib
    import pkgutil

    import numba.core.registry

    import eraflow

    kernels = {}
    for info in pkgutil.walk_packages(eraflow.__path__, "eraflow."):
        if "gpu" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, numba.core.registry.CPUDispatcher):
                cached = type(value._cache).__name__ != "NullCache"
                kernels[f"{value.py_func.__module__}.{name}"] = (
                    value.targetoptions.get("nogil", False) and cached
                )
    assert len(kernels) >= 20  # the eras' and the features' kernels were found
    assert sorted(k for k, policy in kernels.items() if not policy) == []
