"""The simulator: deterministic, plausible, with known regime changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError
from eraflow.stages.simulate import simulate


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = simulate(days=4, entities=["x"], seed=1)
    b = simulate(days=4, entities=["x"], seed=1)
    c = simulate(days=4, entities=["x"], seed=2)
    for name in a.sources:
        pd.testing.assert_frame_equal(a.sources[name], b.sources[name])
    assert not a.sources["sim_climate"]["value"].equals(c.sources["sim_climate"]["value"])


def test_regime_changes_are_returned_per_entity() -> None:
    sim = simulate(days=40, entities=["x", "y"])
    changes = sim.regime_changes
    assert changes.groupby("entity").size().to_dict() == {"x": 3, "y": 3}
    x = changes[changes["entity"] == "x"]
    assert x["time"].tolist() == [sim.start + pd.Timedelta(days=d) for d in (10, 20, 30)]
    assert x["level"].tolist() == ["B", "A", "B"]
    y = changes[changes["entity"] == "y"]
    assert (y["time"].to_numpy() - x["time"].to_numpy() == np.timedelta64(1, "D")).all()


def test_signals_follow_their_regimes() -> None:
    sim = simulate(days=40, entities=["x"])
    climate = sim.sources["sim_climate"]
    lamps = sim.sources["sim_lamps"].set_index("time")["value"]
    assert lamps[: sim.start + pd.Timedelta(days=20)].max() == 0.0  # no lamps before level A
    winter = lamps[sim.start + pd.Timedelta(days=21) : sim.start + pd.Timedelta(days=29)]
    on_hours = sorted(set(winter[winter == 1.0].index.hour))
    assert on_hours == list(range(4, 20))
    air = climate[climate["sensor"] == "air_temp_c"].set_index("time")["value"]
    early = air[: sim.start + pd.Timedelta(days=9)].mean()
    late = air[sim.start + pd.Timedelta(days=21) : sim.start + pd.Timedelta(days=29)].mean()
    assert late - early > 2.5  # heating setpoint 18 -> 21 °C, plus lamp heat
    co2 = climate[climate["sensor"] == "co2_ppm"]["value"]
    assert (co2 == 0.0).sum() > 0  # simulated dropouts, for the range check downstream


def test_outages_and_sources() -> None:
    sim = simulate(days=10, entities=["x"])
    assert set(sim.sources) == {"sim_climate", "sim_lamps", "sim_market"}
    air = sim.sources["sim_climate"].query("sensor == 'air_temp_c'")
    expected = 10 * 24 * 60
    assert expected - 6 * 60 - 200 < len(air) < expected - 6 * 60  # one 6 h outage + short gaps
    steps = air["time"].diff().dropna()
    assert steps.max() >= pd.Timedelta("6h")


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="days must be >= 2"):
        simulate(days=1)
    with pytest.raises(ConfigError, match="entity"):
        simulate(entities=[])
