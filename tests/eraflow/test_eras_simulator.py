"""Era detection on the built-in simulator: known regime changes are found at their level."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import entity_frames
from eraflow.stages.aggregate import aggregate
from eraflow.stages.eras import EraWarning, detect_eras
from eraflow.stages.gapfill import gap_fill
from eraflow.stages.simulate import Regime, simulate


def simulated_eras(**kwargs: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Eras of one simulated compartment, through the real aggregate and gap-fill stages."""
    sim = simulate(entities=["x"], **kwargs)  # type: ignore[arg-type]
    catalogue = load_catalogue()
    grid = gap_fill(aggregate(list(sim.sources.values()), catalogue).grid, catalogue).grid
    values, _ = entity_frames(grid)["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EraWarning)
        return detect_eras(values, entity="x"), sim.regime_changes


def boundaries(eras: pd.DataFrame, level: str) -> list[pd.Timestamp]:
    starts = sorted(eras.loc[eras["level"] == level, "start"])
    return starts[1:]  # the first era's start is the data's start, not a change


@pytest.mark.parametrize(("days", "seed"), [(60, 5), (84, 3)])
def test_known_changes_are_found_at_their_level(days: int, seed: int) -> None:
    eras, truth = simulated_eras(days=days, seed=seed)
    for change in truth.itertuples():
        found = boundaries(eras, change.level)
        nearest = min(abs(t - change.time) for t in found)
        assert nearest <= pd.Timedelta("12h"), (change.description, change.time, found)
    # Nothing invented at the coarse level: every A boundary sits on a true change.
    for boundary in boundaries(eras, "A"):
        assert min(abs(boundary - t) for t in truth["time"]) <= pd.Timedelta("12h")


def test_steady_operation_gives_one_coarse_era() -> None:
    steady = [Regime(0.0, "A", 20.0, (4, 20), 900.0, "steady")]
    eras, truth = simulated_eras(days=42, seed=2, regimes=steady)
    assert truth.empty
    counts = eras.groupby("level").size()
    assert counts["A"] == 1
    assert counts["B"] <= 2  # at most one weather-driven split (a cloudy spell)


def test_stationary_noise_is_one_era_at_every_level() -> None:
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=14 * 288, freq="5min", tz="UTC", name="time")
    values = pd.DataFrame(
        {
            name: rng.normal(loc, scale, len(index))
            for name, loc, scale in [
                ("air_temp_c", 20, 0.5),
                ("co2_ppm", 600, 30),
                ("rh_percent", 80, 3),
                ("pipe_temp_1_c", 45, 2),
            ]
        },
        index=index,
    )
    eras = detect_eras(values, entity="noise")
    assert eras.groupby("level").size().to_dict() == {"A": 1, "B": 1, "C": 1}
