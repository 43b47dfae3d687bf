"""The feature-pipeline flow on a real (temporary) Prefect API."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from eraflow.catalogue import load_catalogue
from eraflow.config import SimulatorSettings
from eraflow.runs.scope import read_feature_matrix
from eraflow.runs.summary import RunSummary
from eraflow.stages.aggregate import aggregate
from eraflow.stages.gapfill import gap_fill
from eraflow.stages.matrix import MissingValues
from eraflow.stages.simulate import simulate
from eraflow.store import ParquetStore
from eraflow.store.grid import read_entity_grid
from flows.cli import main
from flows.pipeline import feature_pipeline


def artifact_keys(flow_run_id: object) -> set[str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts if a.key} | {a.type for a in artifacts}


@pytest.mark.slow
def test_simulator_run_stores_every_table_idempotently(tmp_path: Path) -> None:
    store = tmp_path / "store"
    settings = SimulatorSettings(days=4, entities=["sim_a", "sim_b"], seed=11)
    state = feature_pipeline(store=str(store), simulator=settings, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.grid_rows == 4 * 288 * 2
    assert summary.entities == ["sim_a", "sim_b"]

    stored = pd.read_parquet(store / "grid")
    # The flow stores exactly what the library computes on the same simulated data.
    sim = simulate(start=settings.start, days=4, entities=settings.entities, seed=11)
    expected = gap_fill(
        aggregate(list(sim.sources.values()), load_catalogue()).grid, load_catalogue()
    ).grid
    air = stored[stored["sensor"] == "air_temp_c"].sort_values(["entity", "time"])
    np.testing.assert_allclose(air["value"].to_numpy(), expected["air_temp_c"].to_numpy())
    assert air["filled"].sum() == expected["filled__air_temp_c"].sum() > 0

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state is not None and run.state.is_completed()
    keys = artifact_keys(run.id)
    assert {
        "ingest-report",
        "grid-coverage",
        "data-quality",
        "pipeline-summary",
        "eras-sim-a",
        "eras-sim-b",
    } <= keys
    plot = store / "reports" / "runs" / str(run.id) / "eras-sim_a.png"
    assert summary.plots["sim_a"] == str(plot)
    assert plot.stat().st_size > 10_000

    eras = pd.read_parquet(store / "eras")
    features = pd.read_parquet(store / "features")
    for _entity, part in eras.groupby("entity"):
        starts = {lv: set(part.loc[part["level"] == lv, "start"]) for lv in "ABC"}
        assert starts["A"] <= starts["B"] <= starts["C"]
        # Era ids are minutes since the epoch of the start: stable across runs and chunks.
        minutes = (part["start"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1min")
        assert (part["era_id"] == minutes).all()
    data = eras[eras["kind"] == "data"]
    keys_of_eras = set(data[["entity", "level", "era_id"]].itertuples(index=False, name=None))
    keys_of_features = set(
        features[["entity", "level", "era_id"]].itertuples(index=False, name=None)
    )
    assert keys_of_features == keys_of_eras  # every data era has features, none is orphaned
    assert not features.duplicated(["entity", "level", "era_id", "sensor", "feature"]).any()
    assert summary.feature_rows == len(features)
    # the engine computes tsfresh's efficient catalogue at every level; tsfresh itself is off;
    # the engine stage also writes the greenhouse family (the simulator has its inputs)
    assert set(features["engine"]) == {"numpy", "greenhouse"}
    for level in "ABC":
        names = set(features.loc[features["level"] == level, "feature"].astype(str))
        assert {'linear_trend_timewise__attr_"slope"', "ar_coefficient__coeff_1__k_10"} <= names
    ledger = pd.read_parquet(store / "feature_ledger")
    merged = ledger.merge(eras, on=["entity", "level", "era_id"], suffixes=("", "_era"))
    assert (merged["fingerprint"] == merged["fingerprint_era"]).all()

    selection = pd.read_parquet(store / "selection")
    assert set(selection["scope"]) == {"sim_a+sim_b"}
    for level, chosen in selection.groupby("level"):
        assert summary.selection[level].kept == chosen["kept"].sum()
        level_features = features[features["level"] == level]
        wide_names = set(
            level_features["sensor"].astype(str) + "__" + level_features["feature"].astype(str)
        )
        assert set(chosen["feature"]) == wide_names
        assert chosen.loc[~chosen["kept"], "reason"].str.len().gt(0).all()
        n_eras = int((data["level"] == level).sum())
        assert chosen["eras"].between(1, n_eras).all()  # each decision names its evidence
        if level == "A":  # 4 days: a handful of eras against thousands of features
            assert n_eras < 10
            assert chosen["reason"].str.startswith(f"too few eras (n={n_eras})").any()
        with ParquetStore(store) as opened:
            wide = read_feature_matrix(opened, "sim_a+sim_b", level, missing=MissingValues("keep"))
            ready = read_feature_matrix(opened, "sim_a+sim_b", level)
        assert len(wide) == (data["level"] == level).sum()  # one row per data era
        kept = chosen.loc[chosen["kept"]].sort_values("position")["feature"].tolist()
        assert wide.columns.tolist() == kept
        # as returned, the matrix goes into PCA and KMeans at every level
        assert np.isfinite(ready.to_numpy()).all() and ready.shape[1] > 0
        components = PCA(n_components=min(2, *ready.shape)).fit_transform(ready)
        assert components.shape == (len(ready), min(2, *ready.shape))
        labels = KMeans(n_clusters=min(3, len(ready)), n_init=3, random_state=0).fit_predict(ready)
        assert len(labels) == len(wide)
        # a value read back equals the long table's, by key
        entity, _, era = wide.index[0]
        sensor, feature = kept[0].split("__", 1)
        row = level_features[
            (level_features["entity"] == entity)
            & (level_features["era_id"] == era)
            & (level_features["sensor"] == sensor)
            & (level_features["feature"] == feature)
        ]
        assert wide[kept[0]].iloc[0] == pytest.approx(row["value"].iloc[0], nan_ok=True)

    first_plot = plot.read_bytes()
    again = feature_pipeline(store=str(store), simulator=settings, return_state=True)
    assert again.is_completed()
    assert again.result().feature_rows == 0  # the store says every era is up to date
    assert again.result().computed == []
    # Each run's artifacts name its own files: the first run's plot is still its own.
    second_plot = Path(again.result().plots["sim_a"])
    assert second_plot != plot and second_plot.is_file()
    assert plot.read_bytes() == first_plot
    shown = RunSummary.model_validate_json((store / "reports" / "runs" / "latest.json").read_text())
    assert shown == again.result().model_copy(update={"report": shown.report})
    pd.testing.assert_frame_equal(
        pd.read_parquet(store / "grid")
        .sort_values(["entity", "sensor", "time"])
        .reset_index(drop=True),
        stored.sort_values(["entity", "sensor", "time"]).reset_index(drop=True),
    )
    coverage = pd.read_parquet(store / "coverage")
    sensors = stored.groupby("entity")["sensor"].nunique().sum()
    assert len(coverage) == 4 * sensors  # one row per (entity, sensor, day)
    pd.testing.assert_frame_equal(pd.read_parquet(store / "eras"), eras)
    again_features = pd.read_parquet(store / "features")
    pd.testing.assert_frame_equal(again_features, features)


@pytest.mark.slow
def test_tsfresh_reference_mode_adds_only_what_the_engine_lacks(tmp_path: Path) -> None:
    """tsfresh itself, when asked for a level, computes the profile's rest: nothing twice."""
    state = feature_pipeline(
        store=str(tmp_path),
        simulator=SimulatorSettings(days=2, entities=["sim_a"], seed=3),
        features_profile="minimal",
        tsfresh_levels=["B"],
        tsfresh_profile="efficient",
        select=False,
        report=False,
        return_state=True,
    )
    assert state.is_completed(), state.message
    features = pd.read_parquet(tmp_path / "features")
    by_engine = features.groupby("engine", observed=True)
    assert set(by_engine.groups) == {"numpy", "greenhouse", "tsfresh"}
    tsfresh_rows = features[features["engine"] == "tsfresh"]
    assert set(tsfresh_rows["level"]) == {"B"}
    key = ["level", "era_id", "sensor", "feature"]
    assert not features.duplicated(key).any()  # nothing computed by both
    engine_names = set(features.loc[features["engine"] == "numpy", "feature"].astype(str))
    tsfresh_names = set(tsfresh_rows["feature"].astype(str))
    assert "mean" in engine_names and "mean" not in tsfresh_names
    assert 'augmented_dickey_fuller__attr_"teststat"__autolag_"AIC"' in tsfresh_names


@pytest.mark.realdata
@pytest.mark.slow
def test_knudjepsen_month(
    tmp_path: Path, greenhouse_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="prefect")
    state = feature_pipeline(
        source="knudjepsen",
        data_root=str(greenhouse_dir / "knudjepsen"),
        start="2015-10-01",
        end="2015-11-01",
        store=str(tmp_path),
        return_state=True,
    )
    assert state.is_completed(), state.message
    with ParquetStore(tmp_path) as opened:
        no3, _ = read_entity_grid(opened, "kj_no3", step=pd.Timedelta("5min"))
        no4, _ = read_entity_grid(opened, "kj_no4", step=pd.Timedelta("5min"))
    assert (len(no3), len(no4)) == (31 * 288, 31 * 288)
    assert "lamp_group_3" not in no4.columns  # a sensor NO4 never had is not NO4's
    # "25-10-2015 03:00:00";22,2 (CET) = 02:00 UTC; the dropped DST hour is bridged only
    # where it is short enough: 2 h 5 min exceeds air temperature's 30 min limit.
    assert no3.loc[pd.Timestamp("2015-10-25 02:00", tz="UTC"), "air_temp_c"] == 22.2
    assert (
        no3.loc[pd.Timestamp("2015-10-25 01:00", tz="UTC"), "air_temp_c"]
        != no3.loc[pd.Timestamp("2015-10-25 01:00", tz="UTC"), "air_temp_c"]
    )  # NaN: not invented
    assert no3["co2_ppm"].isna().all()  # the dead sensor, reported in coverage
    coverage = (
        pd.read_parquet(tmp_path / "coverage").groupby(["entity", "sensor"])[["measured"]].sum()
    )
    assert coverage.loc[("kj_no3", "co2_ppm"), "measured"] == 0
    # The dead sensor is warned about; a sensor the compartment never had (NO4 has lamp
    # groups 1-2 only) is not a dead sensor.
    assert "co2_ppm of kj_no3 has no measured value" in caplog.text
    assert "lamp_group_3 of kj_no4" not in caplog.text


def test_bad_parameters_fail_before_any_work(tmp_path: Path) -> None:
    state = feature_pipeline(source="knudjepsen", store=str(tmp_path / "s"), return_state=True)
    assert state.is_failed()
    assert "needs data_root" in state.message
    state = feature_pipeline(freq="1 fortnight", store=str(tmp_path / "s"), return_state=True)
    assert state.is_failed() and "freq" in state.message
    assert not (tmp_path / "s").exists()


def test_empty_range_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    state = feature_pipeline(
        start="2030-01-01",
        end="2030-01-02",
        store=str(tmp_path / "s"),
        simulator=SimulatorSettings(days=2),
        return_state=True,
    )
    assert state.is_failed()
    assert "no data in" in state.message and "the simulator covers" in state.message
    assert not (tmp_path / "s").exists()


def test_cli_prints_where_the_results_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "cli"
    assert (
        main(["run", "--store", str(store), "--simulator.days", "2", "--empty-tsfresh-levels"]) == 0
    )
    out = capsys.readouterr().out
    assert "flow run Completed" in out and str(store) in out
    assert (store / "reports" / "runs" / "latest.html").is_file()
    assert main(["show", "--store", str(store)]) == 0
    assert "flow run Completed" in capsys.readouterr().out
    assert main(["run", "--store", str(tmp_path / "x"), "--freq", "bad"]) == 2
    assert "freq" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
