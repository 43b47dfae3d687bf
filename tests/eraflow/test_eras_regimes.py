"""Regime labels: eras of one kind of operation share a label; seeded, per level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eraflow.stages.eras.regimes import era_summaries, label_regimes, regime_labels

STEP = pd.Timedelta("5min")


def _alternating(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """Eras alternating between two operating modes (warm and humid / cool and dry)."""
    rng = np.random.default_rng(seed)
    modes = [0, 1, 0, 1, 1, 0, 1, 0, 0, 1]
    lengths = rng.integers(100, 400, len(modes))
    centre = {0: (18.0, 85.0), 1: (24.0, 60.0)}
    air, rh = [], []
    for mode, n in zip(modes, lengths, strict=True):
        air.append(rng.normal(centre[mode][0], 0.5, n))
        rh.append(rng.normal(centre[mode][1], 2.0, n))
    index = pd.date_range("2024-01-01", periods=int(lengths.sum()), freq=STEP, tz="UTC")
    values = pd.DataFrame({"air_temp_c": np.concatenate(air), "rh_percent": np.concatenate(rh)})
    values.index = index
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    ends = index.append(pd.DatetimeIndex([index[-1] + STEP]))
    eras = pd.DataFrame(
        {
            "level": "C",
            "start": index[bounds[:-1]],
            "end": ends[bounds[1:]],
            "signals": "air_temp_c,rh_percent",
            "kind": "data",
        }
    )
    return values, eras, modes


def test_two_alternating_modes_are_two_regimes_named_by_first_appearance() -> None:
    values, eras, modes = _alternating()
    labels = regime_labels(values, eras)
    assert labels.tolist() == modes  # the first era's mode is regime 0


def test_summaries_are_era_means_and_stds_of_the_standardised_signals() -> None:
    values, eras, _ = _alternating()
    values.iloc[5, 0] = np.nan  # a missing value is left out, not counted as 0
    x = values.to_numpy()
    median = np.nanmedian(x, axis=0)
    q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
    z = (x - median) / ((q75 - q25) / 1.349)
    got = era_summaries(values, eras, ["air_temp_c", "rh_percent"])
    for i, (start, end) in enumerate(zip(eras["start"], eras["end"], strict=True)):
        rows = (values.index >= start) & (values.index < end)
        np.testing.assert_allclose(got[i, :2], np.nanmean(z[rows], axis=0), rtol=1e-12)
        np.testing.assert_allclose(got[i, 2:], np.nanstd(z[rows], axis=0), rtol=1e-9)


def test_one_kind_of_operation_is_one_regime_and_labels_are_reproducible() -> None:
    rng = np.random.default_rng(5)
    same = rng.normal(0.0, 1.0, (40, 4))
    assert set(label_regimes(same)) == {0}
    values, eras, _ = _alternating(seed=9)
    first, second = regime_labels(values, eras), regime_labels(values, eras)
    pd.testing.assert_series_equal(first, second)


def test_gap_eras_have_no_regime_and_levels_are_apart() -> None:
    values, eras, modes = _alternating()
    eras.loc[3, "kind"] = "gap"
    coarse = eras.iloc[[0]].assign(level="A", end=eras["end"].iloc[-1])
    labels = regime_labels(values, pd.concat([eras, coarse], ignore_index=True))
    assert labels.iloc[3] is pd.NA
    kept = [m for i, m in enumerate(modes) if i != 3]
    assert labels.iloc[:10].drop(index=3).tolist() == kept
    assert labels.iloc[10] == 0  # a level with one era: one regime
