"""The spike check: exact Hampel (against a plain loop), stuck probes, the Aarslev dropouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.stages.aggregate import aggregate
from eraflow.stages.ingest import load_mapping, read_mapping
from eraflow.stages.spikes import hampel_spikes, run_spikes


def _hampel_loop(x: np.ndarray, window: int, sigmas: float, min_delta: float) -> np.ndarray:
    """The textbook Hampel filter, one window at a time."""
    half = window // 2
    out = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not np.isfinite(x[i]):
            continue
        part = x[max(0, i - half) : i + half + 1]
        part = part[np.isfinite(part)]
        if len(part) < 3:
            continue
        median = np.median(part)
        mad = np.median(np.abs(part - median))
        distance = abs(x[i] - median)
        out[i] = distance > sigmas * 1.4826 * mad and distance > min_delta
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hampel_equals_the_textbook_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = 20 + np.cumsum(rng.normal(0, 0.2, 2000))
    x[rng.choice(2000, 30, replace=False)] += rng.choice([-8.0, 9.0], 30)
    x[rng.choice(2000, 200, replace=False)] = np.nan
    x[:5] = np.nan
    for window, sigmas, delta in ((13, 5.0, 0.0), (37, 3.0, 1.0), (7, 5.0, 5.0)):
        got = hampel_spikes(x, window=window, sigmas=sigmas, min_delta=delta)
        expected = _hampel_loop(x, window, sigmas, delta)
        np.testing.assert_array_equal(got, expected)
        assert got.sum() > 0


def test_a_stuck_probe_is_dropped_and_real_changes_are_not() -> None:
    warm_up = np.linspace(15.0, 35.0, 60)  # a sunny morning: 20 degrees in 5 hours
    x = warm_up.copy()
    x[30:38] = 0.0  # the probe lost: 0.0 for 40 minutes
    x[29] = 7.5  # a bin averaging a reading and the dropout
    flagged = run_spikes(x, window=36, sigmas=5.0, min_delta=5.0)
    assert np.flatnonzero(flagged).tolist() == list(range(29, 38))

    step = np.r_[np.full(40, 18.0), np.full(40, 26.0)]  # heating set 8 degrees higher
    flat = np.r_[np.full(30, 17.9), np.full(24, 18.0), np.full(30, 18.1)]  # a still night
    hourly_peak = np.r_[np.full(12, np.nan), 30.0, np.full(11, np.nan), 39.0]
    hourly_peak = np.r_[hourly_peak, np.full(11, np.nan), 32.0, np.full(11, np.nan), 31.0]
    for series in (step, flat, hourly_peak):
        assert not run_spikes(series, window=36, sigmas=5.0, min_delta=5.0).any()


@pytest.mark.realdata
def test_the_aarslev_zero_readings_are_dropped(greenhouse_dir: Path) -> None:
    catalogue = load_catalogue()
    results = read_mapping(load_mapping("aarslev"), greenhouse_dir / "aarslev")
    raw = pd.concat([r.frame for r in results], ignore_index=True)
    air = raw[raw["sensor"] == "air_temp_c"]
    assert (air.groupby("entity")["value"].apply(lambda v: (v == 0.0).sum()) > 0).all()
    result = aggregate([r.frame for r in results], catalogue)
    grid = result.grid
    for entity, part in grid.groupby("entity"):
        if part["air_temp_c"].notna().any():
            assert part["air_temp_c"].min() > 1.0, entity  # heated compartments: no 0 °C
    report = result.report.per_sensor.set_index(["entity", "sensor"])
    spikes = report.xs("air_temp_c", level="sensor")["dropped_spike"]
    assert (spikes > 0).all()
    # and no more than the dropouts: a few dozen of tens of thousands of readings
    assert (spikes < 0.005 * report.xs("air_temp_c", level="sensor")["values_in"]).all()


@pytest.mark.realdata
def test_knud_jepsen_air_temperature_has_no_spike(greenhouse_dir: Path) -> None:
    catalogue = load_catalogue()
    start, end = pd.Timestamp("2015-10-01", tz="UTC"), pd.Timestamp("2016-01-01", tz="UTC")
    results = read_mapping(
        load_mapping("knudjepsen"), greenhouse_dir / "knudjepsen", start=start, end=end
    )
    report = aggregate([r.frame for r in results], catalogue, start=start, end=end).report
    assert report.per_sensor["dropped_spike"].sum() == 0
