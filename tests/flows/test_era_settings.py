"""Era penalties and shortest eras per level, set from the flow (so the CLI and the UI form)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from eraflow.common.errors import ConfigError
from eraflow.config import PipelineConfig, SimulatorSettings
from eraflow.stages.eras.config import EraConfig
from flows.pipeline import feature_pipeline

SIMULATOR = SimulatorSettings(days=4, entities=["pen"], seed=2)


def test_a_level_given_in_part_keeps_the_detector_defaults() -> None:
    config = PipelineConfig.build(era_levels={"level_c": {"penalty_scale": 3}})
    detector, defaults = config.eras.detector(), EraConfig()
    assert detector.level_c.penalty_scale == 3
    assert detector.level_c.min_duration == defaults.level_c.min_duration == "3h"
    assert detector.level_a == defaults.level_a and detector.level_b == defaults.level_b


def test_the_detection_step_reaches_the_detector() -> None:
    assert PipelineConfig.build().eras.detector().detect_step == "1h"
    assert PipelineConfig.build(era_detect_step=None).eras.detector().detect_step is None
    assert PipelineConfig.build(era_detect_step="30min").eras.detector().detect_step == "30min"
    with pytest.raises(ConfigError, match="'often' is not a time span"):
        PipelineConfig.build(era_detect_step="often")


def test_the_cost_model_reaches_the_detector() -> None:
    assert PipelineConfig.build().eras.detector().model == "normal"
    assert PipelineConfig.build(era_model="l2").eras.detector().model == "l2"
    with pytest.raises(ConfigError, match="era_model"):
        PipelineConfig.build(era_model="rbf")


def test_gap_settings_reach_the_detector() -> None:
    default = PipelineConfig.build().eras.detector()
    assert (default.gap_min_duration, default.gap_max_coverage) == ("6h", 0.2)
    off = PipelineConfig.build(era_gaps={"min_duration": None}).eras.detector()
    assert off.gap_min_duration is None
    wider = PipelineConfig.build(era_gaps={"max_coverage": 0.5}).eras.detector()
    assert (wider.gap_min_duration, wider.gap_max_coverage) == ("6h", 0.5)
    with pytest.raises(ConfigError, match=r"era_gaps\.max_coverage"):
        PipelineConfig.build(era_gaps={"max_coverage": 1.5})
    with pytest.raises(ConfigError, match="'a while' is not a time span"):
        PipelineConfig.build(era_gaps={"min_duration": "a while"})


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"level_c": {"penalty_scale": -1}}, "era_levels.level_c.penalty_scale"),
        ({"level_b": {"min_duration": "soon"}}, "'soon' is not a time span"),
        ({"level_a": {"min_duration": "-2D"}}, "must be a positive time span"),
        ({"level_d": {"penalty_scale": 1}}, "level_d"),
    ],
)
def test_bad_era_settings_are_named(given: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        PipelineConfig.build(era_levels=given)


def _eras(store: Path, report: bool = False, **era_levels: dict[str, object]) -> pd.DataFrame:
    state = feature_pipeline(
        store=str(store),
        simulator=SIMULATOR,
        era_levels=era_levels,
        features=False,
        select=False,
        report=report,
        era_penalty_path=report,
        return_state=True,
    )
    assert state.is_completed(), state.message
    return pd.read_parquet(store / "eras")


@pytest.mark.slow
def test_a_penalty_set_in_the_config_changes_the_eras(tmp_path: Path) -> None:
    default = _eras(tmp_path / "default")
    coarse = _eras(tmp_path / "coarse", level_c={"penalty_scale": 4.0, "min_duration": "12h"})
    c_default, c_coarse = (e[e["level"] == "C"] for e in (default, coarse))
    assert len(c_coarse) < len(c_default)
    assert (c_default["rows"] < 144).any()  # the default allows eras shorter than 12 h ...
    assert (c_coarse["rows"] >= 144).all()  # ... the setting does not: 12 h of 5-minute rows
    # A and B are chosen among C's boundaries: they can only lose some, never gain any.
    for level in ("A", "B"):
        assert set(coarse.loc[coarse["level"] == level, "start"]) <= set(c_coarse["start"])
    # The same setting in the same (re-used) store leaves the eras as they are; the penalty
    # path artifact shows the set penalty among the others.
    again = _eras(
        tmp_path / "coarse", report=True, level_c={"penalty_scale": 4.0, "min_duration": "12h"}
    )
    with get_client(sync_client=True) as client:
        artifact = next(
            a for a in client.read_latest_artifacts(limit=50) if a.key == "penalty-path-pen"
        )
    assert "| 1x (set) |" in str(artifact.data) and f"4: {len(c_coarse)}" in str(artifact.data)
    assert len(list((tmp_path / "coarse" / "reports" / "runs").glob("*/penalty-path-pen.png"))) == 1
    pd.testing.assert_frame_equal(
        again.drop(columns=["run_id"], errors="ignore"),
        coarse.drop(columns=["run_id"], errors="ignore"),
    )


def test_a_run_without_segmenting_writes_the_grid_and_no_eras(tmp_path: Path) -> None:
    """What a backfill's chunks do: the grid only; the backfill segments once, at its end."""
    store = tmp_path / "chunk"
    state = feature_pipeline(
        store=str(store),
        simulator=SimulatorSettings(days=2, entities=["seg"], seed=4),
        segment=False,
        select=False,
        report=False,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert len(pd.read_parquet(store / "grid")) > 0
    assert not (store / "eras").exists() or pd.read_parquet(store / "eras").empty
    assert state.result().feature_rows == 0


def test_a_bad_penalty_rule_is_named() -> None:
    with pytest.raises(ConfigError, match="era_penalty_rule"):
        PipelineConfig.build(era_penalty_rule="knee")


@pytest.mark.slow
def test_the_elbow_rule_is_applied_stored_and_shown(tmp_path: Path) -> None:
    store = tmp_path / "elbow"
    state = feature_pipeline(
        store=str(store),
        simulator=SIMULATOR,
        era_penalty_rule="elbow",
        features=False,
        select=False,
        return_state=True,
    )
    assert state.is_completed(), state.message
    penalties = pd.read_parquet(store / "era_penalties").set_index("level")
    eras = pd.read_parquet(store / "eras")
    data = eras[eras["kind"] == "data"]
    assert set(penalties["rule"]) == {"elbow"} and set(penalties.index) == {"A", "B", "C"}
    assert penalties["eras"].to_dict() == data.groupby("level").size().to_dict()
    defaults = EraConfig()
    for level, row in penalties.iterrows():
        assert row["penalty_scale"] == defaults.level(str(level)).penalty_scale * row["factor"]
    with get_client(sync_client=True) as client:
        artifact = next(
            a for a in client.read_latest_artifacts(limit=50) if a.key == "penalty-path-pen"
        )
    text = str(artifact.data)
    assert text.count("applied)") == 3  # one applied penalty per level, in the table
    assert "(rule: elbow)" in str(artifact.description)
