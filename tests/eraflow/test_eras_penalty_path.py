"""The penalty path and its elbow rule: C checked against ruptures, the elbow against truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ruptures as rpt

from eraflow.stages.eras import EraConfig, LevelConfig, detect_eras
from eraflow.stages.eras.penalty_path import (
    FACTORS,
    PenaltyRule,
    choose_penalties,
    elbow,
    plot_penalty_path,
)
from tests.eraflow.test_eras_levels import _greenhouse

SIGNALS = ("air_temp_c", "rh_percent", "pipe_temp_1_c")


def _values() -> pd.DataFrame:
    return _greenhouse(days=21).interpolate(method="time")  # 21 * 288 rows: whole hours


def penalty_path(
    values: pd.DataFrame,
    *,
    config: EraConfig,
    factors: tuple[float, ...] = FACTORS,
    rule: PenaltyRule = "set",
) -> pd.DataFrame:
    """The path drawn over ``detect_eras`` of ``values``."""

    def segment(settings: EraConfig) -> pd.DataFrame:
        return detect_eras(values, entity="p", config=settings)

    return choose_penalties(segment, config, rule=rule, factors=factors).path


def test_level_c_counts_equal_ruptures_pelt_at_every_penalty() -> None:
    values = _values()
    config = EraConfig(signals=SIGNALS, model="l2", scaling="zscore")
    path = penalty_path(values, config=config)
    # The reference: hourly means of the z-scored signals, ruptures' exact PELT, l2 cost,
    # the BIC-style penalty c * d * log(n), min size 3 h = 3 hourly blocks.
    x = values[list(SIGNALS)].to_numpy()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    hourly = z.reshape(-1, 12, len(SIGNALS)).mean(axis=1)
    algo = rpt.Pelt(model="l2", min_size=3, jump=1).fit(hourly)
    c_path = path[path["level"] == "C"]
    assert list(c_path["factor"]) == sorted(FACTORS)
    for _, row in c_path.iterrows():
        pen = row["penalty_scale"] * len(SIGNALS) * math.log(len(hourly))
        assert row["eras"] == len(algo.predict(pen=pen)), row.to_dict()
    assert c_path["eras"].iloc[0] > c_path["eras"].iloc[-1]


def test_counts_fall_with_the_penalty_and_the_choice_is_the_run() -> None:
    values = _values()
    config = EraConfig(signals=SIGNALS)
    path = penalty_path(values, config=config, factors=(0.5, 2.0, 8.0))
    eras = detect_eras(values, entity="p", config=config)
    for level, part in path.groupby("level"):
        assert list(part["factor"]) == [0.5, 1.0, 2.0, 8.0]
        assert np.all(np.diff(part["eras"].to_numpy()) <= 0), part  # exact search: monotone
        chosen = part[part["applied"]]
        assert len(chosen) == 1
        assert chosen["eras"].iloc[0] == (eras["level"] == level).sum()
        assert chosen["penalty_scale"].iloc[0] == config.level(str(level)).penalty_scale


def test_bocpd_has_no_level_c_path_and_the_plot_is_written(tmp_path: Path) -> None:
    config = EraConfig(signals=SIGNALS, method="bocpd")
    path = penalty_path(_values(), config=config, factors=(0.5, 2.0))
    assert set(path["level"]) == {"A", "B"}
    png = plot_penalty_path(path, title="p", path=tmp_path / "path.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_elbow_is_where_the_plateau_starts() -> None:
    # log10 eras 3, 2.996, 2.991, 2, 1, 0.954, 0.903 at factors 2^k: the chord from the first
    # to the last point lies furthest above the curve at the fifth point (by hand: at x = 4/6
    # the chord is at 0.333 of the y range, the point at 0.047), where the drop flattens.
    scales = 0.5 * 2.0 ** np.arange(7)
    eras = np.array([1000, 990, 980, 100, 10, 9, 8])
    assert elbow(scales, eras) == 4
    assert elbow(scales, np.full(7, 12)) is None  # a flat path has no elbow
    # a count that falls ever faster (concave on log-log) reaches no plateau: no elbow
    assert elbow(scales, np.array([50, 40, 30, 20, 10, 5, 1])) is None


def test_the_path_marks_one_elbow_per_level_that_has_one() -> None:
    path = penalty_path(_values(), config=EraConfig(signals=SIGNALS))
    for _, part in path.groupby("level"):
        assert part["elbow"].sum() <= 1
        if part["eras"].nunique() > 1 and part["elbow"].any():
            at = part.index.get_loc(part.index[part["elbow"]][0])
            expected = elbow(part["penalty_scale"].to_numpy(), part["eras"].to_numpy())
            assert at == expected


def _regimes(seed: int = 3) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Four weeks of six operating regimes (air temperature and CO2 set points) with noise."""
    rng = np.random.default_rng(seed)
    n = 288 * 28
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC")
    temp = np.repeat([18.0, 22.0, 19.0, 24.0, 20.0, 23.0], n // 6)
    co2 = np.repeat([400.0, 800.0, 500.0, 900.0, 450.0, 700.0], n // 6)
    values = pd.DataFrame(
        {"air_temp_c": temp + rng.normal(0, 1.0, n), "co2_ppm": co2 + rng.normal(0, 60, n)},
        index=index,
    )
    return values, index[:: n // 6][1:]


def test_the_elbow_rule_finds_the_true_regimes_where_the_set_penalty_over_segments() -> None:
    values, changes = _regimes()
    low = EraConfig(level_c=LevelConfig(penalty_scale=0.05, min_duration="3h"))

    def segment(settings: EraConfig) -> pd.DataFrame:
        return detect_eras(values, entity="r", config=settings)

    as_set = detect_eras(values, entity="r", config=low)
    assert (as_set["level"] == "C").sum() > 30  # the set penalty cuts the noise
    choice = choose_penalties(segment, low, rule="elbow")
    eras = segment(choice.config)
    c_starts = pd.DatetimeIndex(eras.loc[eras["level"] == "C", "start"])[1:]
    assert len(c_starts) == len(changes) == 5  # the five true changes, no others ...
    assert (abs(c_starts - changes) <= pd.Timedelta("1h")).all()  # ... each within an hour
    assert choice.factors["C"] > 1.0  # the rule raised C's penalty
    assert choice.config.level_c.penalty_scale == 0.05 * choice.factors["C"]


@pytest.mark.parametrize("rule", ["set", "elbow"])
def test_the_applied_factor_is_the_rule_s_and_the_counts_are_the_segmentation_s(
    rule: PenaltyRule,
) -> None:
    values = _values()

    def segment(settings: EraConfig) -> pd.DataFrame:
        return detect_eras(values, entity="p", config=settings)

    choice = choose_penalties(segment, EraConfig(signals=SIGNALS), rule=rule)
    eras = segment(choice.config)
    for level, part in choice.path.groupby("level"):
        at = elbow(part["penalty_scale"].to_numpy(), part["eras"].to_numpy())
        expected = 1.0 if rule == "set" or at is None else part["factor"].iloc[at]
        assert part.loc[part["applied"], "factor"].tolist() == [expected]
        assert choice.factors[str(level)] == expected
        # the count at the applied factor is the count of the final segmentation
        assert part.loc[part["applied"], "eras"].iloc[0] == (eras["level"] == level).sum()
