"""GPU (CuPy) vs CPU (NumPy) parity for every registered feature, to 1e-6 relative.

Importing this module never imports cupy, tsfresh or prefect: the skip condition is computed
with eraflow's lazy, exception-safe check, so the module runs unchanged on the GPU test machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eraflow.stages.features import (
    compute_features,
    compute_segment_matrix,
    feature_registry,
    gpu_available,
)

requires_gpu = pytest.mark.skipif(
    not gpu_available(), reason="no CUDA device (CuPy absent or no GPU)"
)
pytestmark = [pytest.mark.gpu, requires_gpu]

ALL_SPECS = [s for c in feature_registry().values() for s in c.specs()]


def segments(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=n) for n in (1, 2, 3, 5, 12, 49, 51, 288, 1500)]
    parts += [
        1000 + 300 * rng.normal(size=600),
        np.full(40, 2.5),
        np.full(6, np.nan),
        np.round(20 + rng.normal(size=500), 1),
        (rng.random(300) > 0.6).astype(float),
    ]
    for p in parts:
        if len(p) > 10:
            p[rng.random(len(p)) < 0.05] = np.nan
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    grid = np.concatenate(parts)
    filled = rng.random(len(grid)) < 0.1
    return grid, offsets, filled


def test_every_feature_gpu_equals_cpu():
    grid, offsets, filled = segments()
    cpu, specs, e_cpu = compute_segment_matrix(
        grid, offsets, ALL_SPECS, filled=filled, step="5min", device="cpu"
    )
    gpu, _, e_gpu = compute_segment_matrix(
        grid, offsets, ALL_SPECS, filled=filled, step="5min", device="gpu"
    )
    assert (e_cpu, e_gpu) == ("numpy", "cupy")
    assert isinstance(gpu, np.ndarray)
    bad = []
    for j, s in enumerate(specs):
        # angles of coefficients that are ~0 are noise in both engines: compare in degrees abs
        atol = 1e-6 if s.params.get("attr") == "angle" else 1e-9
        if not np.allclose(gpu[:, j], cpu[:, j], rtol=1e-6, atol=atol, equal_nan=True):
            bad.append(s.name)
    assert not bad, bad


def test_compute_features_gpu_engine_column():
    idx = pd.date_range("2020-01-01", periods=2000, freq="5min", tz="UTC", name="time")
    rng = np.random.default_rng(0)
    values = pd.DataFrame({"a": rng.normal(size=2000), "b": 400 + rng.normal(size=2000)}, index=idx)
    mask = pd.DataFrame(False, index=idx, columns=values.columns)
    eras = pd.DataFrame(
        {"level": "A", "era_id": [0, 1], "start": [idx[0], idx[700]], "end": [idx[700], idx[-1]]}
    )
    g = compute_features(values, mask, eras, entity="e", profile="seeds", device="gpu")
    c = compute_features(values, mask, eras, entity="e", profile="seeds", device="cpu")
    assert set(g["engine"]) == {"cupy"}
    np.testing.assert_allclose(g["value"], c["value"], rtol=1e-6, atol=1e-9)
