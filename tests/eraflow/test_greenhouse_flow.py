"""The greenhouse family in an embedded pipeline run: stored per era, selected, reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.config import SimulatorSettings
from eraflow.runs.scope import read_feature_matrix
from eraflow.stages.greenhouse import GREENHOUSE_FEATURES, parse_greenhouse_name
from eraflow.stages.matrix import MissingValues
from eraflow.store import ParquetStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

# The simulator's compartment has radiation, air temperature, RH, CO2, one heating pipe, the
# main lamp group and an energy price: every family but the second pipe and the lamp groups.
FAMILIES = {
    "par_umol_m2_s": 'daily_light_integral__stat_"mean"',
    "radiation_w_m2": "radiation_sum",
    "temp_above_base_c": "degree_days",
    "air_temp_c": "day_night_difference",
    "vpd_kpa": "hours_above_band",
    "co2_above_ambient_ppm": "co2_dose",
    "pipe_1_minus_air_c": "heating_degree_hours",
    "lamp_status": "lamp_hours",
    "lamp_cost_eur_m2_h": "energy_cost",
}


def test_pipeline_stores_reports_and_selects_greenhouse_features(tmp_path: Path) -> None:
    from flows.pipeline import feature_pipeline

    site = tmp_path / "site.toml"
    site.write_text("[greenhouse]\nlamp_power_w_m2 = 60.0\n", encoding="utf-8")
    store = tmp_path / "store"
    params = {
        "store": str(store),
        "simulator": SimulatorSettings(days=3, entities=["gh_a"], seed=4),
        "features_profile": "minimal",
        "catalogue": str(site),
    }
    state = feature_pipeline(**params, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    eras = pd.read_parquet(store / "eras")
    data = eras[eras["kind"] == "data"]
    features = pd.read_parquet(store / "features").astype({"sensor": str, "feature": str})
    assert set(features["engine"]) == {"numpy", "greenhouse"}
    greenhouse = features[features["engine"] == "greenhouse"]
    # every data era of every level has every family, under declared, parsable names
    for level in "ABC":
        ids = set(data.loc[data["level"] == level, "era_id"])
        at_level = greenhouse[greenhouse["level"] == level]
        for sensor, feature in FAMILIES.items():
            rows = at_level[(at_level["sensor"] == sensor) & (at_level["feature"] == feature)]
            assert set(rows["era_id"]) == ids, (level, sensor, feature)
    declared = {f.column for f in GREENHOUSE_FEATURES}
    assert set(greenhouse["sensor"] + "__" + greenhouse["feature"]) <= declared
    for name in set(greenhouse["feature"]):
        assert parse_greenhouse_name(name).name == name
    assert not features.duplicated(["entity", "level", "era_id", "sensor", "feature"]).any()
    # the light integral of level A adds up over its eras to the simulated days' light
    level_a = greenhouse[(greenhouse["level"] == "A") & (greenhouse["feature"] == "light_integral")]
    assert level_a["value"].sum() > 0
    # one write, one ledger row per era: its count holds the greenhouse rows too
    ledger = pd.read_parquet(store / "feature_ledger")
    counts = features.groupby(["level", "era_id"]).size()
    by_era = ledger.set_index(["level", "era_id"])["values"]
    assert (by_era.reindex(counts.index) == counts).all()
    assert summary.feature_rows == len(features)

    # selection sees the new columns; the matrix reads back
    selection = pd.read_parquet(store / "selection")
    chosen = selection[selection["feature"].isin(declared)]
    assert len(chosen) and chosen["reason"].notna().all()
    with ParquetStore(store) as opened:
        wide = read_feature_matrix(opened, "gh_a", "A", missing=MissingValues("keep"))
    kept = selection[(selection["level"] == "A") & selection["kept"]]
    assert wide.columns.tolist() == kept.sort_values("position")["feature"].tolist()
    assert np.isfinite(wide.to_numpy(dtype=float)).any()
    # the light integral is not constant, not all NaN and like no other feature: kept
    assert "par_umol_m2_s__light_integral" in set(selection.loc[selection["kept"], "feature"])

    # the report shows the greenhouse days, with their plot
    page = Path(summary.report).read_text(encoding="utf-8")
    assert "Greenhouse days" in page and "DLI mean" in page
    png = Path(summary.report).parent / summary.run_id / "greenhouse-days.png"
    assert png.stat().st_size > 5_000

    # the same settings again: the store says every era is up to date
    again = feature_pipeline(**params, return_state=True)
    assert again.is_completed() and again.result().feature_rows == 0
