"""Each sensor's engine profile: the run's, raised by the sensor catalogue; seeds never raised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.stages.features import compute_features, profile_specs
from eraflow.stages.sensor_profiles import compute_profiled_features, engine_sensor_profiles

AIR, OUT, NEW = "air_temp_c", "outside_temp_c", "not_in_the_catalogue"


@pytest.fixture
def raised_catalogue(tmp_path: Path):
    path = tmp_path / "site.toml"
    path.write_text(f'[{AIR}]\ntsfresh_profile = "comprehensive"\n')
    return load_catalogue(path)


def test_packaged_catalogue_raises_minimal_runs_for_key_sensors():
    cat = load_catalogue()
    assert cat.get(AIR).tsfresh_profile == "efficient"
    assert cat.get(OUT).tsfresh_profile == "minimal"
    assert engine_sensor_profiles("minimal", [AIR, OUT, NEW], cat) == {
        AIR: "efficient",
        OUT: "minimal",
        NEW: "minimal",
    }
    assert engine_sensor_profiles("efficient", [AIR, OUT], cat) == {
        AIR: "efficient",
        OUT: "efficient",
    }


def test_a_site_catalogue_asks_for_comprehensive(raised_catalogue):
    assert engine_sensor_profiles("efficient", [AIR, OUT], raised_catalogue) == {
        AIR: "comprehensive",
        OUT: "efficient",
    }
    assert engine_sensor_profiles("seeds", [AIR, OUT], raised_catalogue) == {
        AIR: "seeds",
        OUT: "seeds",
    }


def test_features_follow_each_sensors_profile(raised_catalogue):
    index = pd.date_range("2024-01-01", periods=600, freq="5min", tz="UTC", name="time")
    rng = np.random.default_rng(4)
    values = pd.DataFrame(
        {AIR: 20 + rng.normal(size=600).cumsum() / 10, OUT: 5 + rng.normal(size=600)},
        index=index,
    )
    eras = pd.DataFrame(
        {
            "level": "A",
            "era_id": [0, 1],
            "start": [index[0], index[250]],
            "end": [index[250], index[-1] + pd.Timedelta("5min")],
        }
    )
    profiles = engine_sensor_profiles("efficient", [AIR, OUT], raised_catalogue)
    out = compute_profiled_features(
        values, None, eras, entity="gh", profiles=profiles, device="cpu"
    )
    names = {
        sensor: set(out.loc[out["sensor"] == sensor, "feature"].astype(str)) for sensor in profiles
    }
    assert names[AIR] == {s.name for s in profile_specs("comprehensive")}
    assert names[OUT] == {s.name for s in profile_specs("efficient")}
    assert "sample_entropy" in names[AIR] and "sample_entropy" not in names[OUT]
    assert not out.duplicated(["era_id", "sensor", "feature"]).any()
    # the same values as one engine call per sensor
    for sensor, profile in profiles.items():
        alone = compute_features(
            values, None, eras, entity="gh", profile=profile, sensors=[sensor], device="cpu"
        )
        mine = out[out["sensor"] == sensor]
        merged = mine.merge(alone, on=["era_id", "feature"], suffixes=("", "_alone"))
        assert len(merged) == len(alone) == len(mine)
        np.testing.assert_array_equal(merged["value"], merged["value_alone"])
