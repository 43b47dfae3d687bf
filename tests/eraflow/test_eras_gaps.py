"""Gap eras: stretches of missing era signals are eras of their own, at every level."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import load_catalogue
from eraflow.common.grid import entity_frames
from eraflow.stages.aggregate import aggregate
from eraflow.stages.eras import EraConfig, EraWarning, detect_eras
from eraflow.stages.eras.gaps import detect_eras_with_gaps, gap_stretches
from eraflow.stages.gapfill import gap_fill
from eraflow.stages.ingest import load_mapping, read_mapping
from tests.eraflow.test_eras_levels import _greenhouse

SIGNALS = ("air_temp_c", "rh_percent", "radiation_w_m2", "pipe_temp_1_c", "outside_temp_c")
CONFIG = EraConfig(signals=SIGNALS)


def _grid(days: int = 14) -> tuple[pd.DataFrame, pd.DataFrame]:
    values = _greenhouse(days=days).interpolate(method="time")
    return values, pd.DataFrame(False, index=values.index, columns=values.columns)


def _inside(eras: pd.DataFrame, a: pd.Timestamp, b: pd.Timestamp) -> pd.DataFrame:
    """Eras with a boundary strictly inside (a, b)."""
    return eras[(eras["start"] > a) & (eras["start"] < b)]


def _assert_nested(eras: pd.DataFrame) -> None:
    starts = {lv: set(eras.loc[eras["level"] == lv, "start"]) for lv in "ABC"}
    assert starts["A"] <= starts["B"] <= starts["C"]
    for _, part in eras.groupby("level"):
        assert (part["start"].iloc[1:].to_numpy() == part["end"].iloc[:-1].to_numpy()).all()


def test_a_missing_stretch_is_one_gap_era_at_every_level() -> None:
    values, mask = _grid()
    a, b = 5 * 288 + 7, 7 * 288 + 100  # two days and a bit, off the hour on both sides
    values.iloc[a:b, :] = np.nan
    eras = detect_eras_with_gaps(values, mask, entity="g", config=CONFIG)
    gap_start, gap_end = values.index[a], values.index[b]
    gaps = eras[eras["kind"] == "gap"]
    assert list(gaps["level"]) == ["A", "B", "C"]
    assert (gaps["start"] == gap_start).all() and (gaps["end"] == gap_end).all()
    assert (gaps["rows"] == b - a).all() and (gaps["method"] == "gap").all()
    assert _inside(eras, gap_start, gap_end).empty  # no boundary inside the gap
    _assert_nested(eras)
    assert eras.groupby("level")["rows"].sum().eq(len(values)).all()
    # the data either side is segmented on its own: a plain detection of each part
    before = detect_eras(values.iloc[:a], entity="g", config=CONFIG)
    got = eras[(eras["kind"] == "data") & (eras["end"] <= gap_start)]
    pd.testing.assert_frame_equal(
        got.drop(columns=["kind", "era_id"]).reset_index(drop=True),
        before.sort_values(["level", "start"]).drop(columns="era_id").reset_index(drop=True),
    )


def test_filled_values_are_not_measured() -> None:
    values, mask = _grid()
    mask.iloc[3 * 288 : 4 * 288, :] = True  # a day the gap-filler drew
    eras = detect_eras_with_gaps(values, mask, entity="g", config=CONFIG)
    gaps = eras[eras["kind"] == "gap"]
    assert set(gaps["start"]) == {values.index[3 * 288]}
    assert set(gaps["end"]) == {values.index[4 * 288]}


def test_short_gaps_and_sparse_logging_are_data() -> None:
    values, mask = _grid()
    plain = detect_eras(values, entity="g", config=CONFIG)
    short = values.copy()
    short.iloc[1000:1060, :] = np.nan  # 5 hours: under the 6 h minimum
    sparse = values.copy()
    keep = np.zeros(len(values), dtype=bool)
    keep[::6] = True  # a reading every 30 minutes, as some loggers write at night
    sparse.loc[~keep & (np.arange(len(values)) >= 2000), :] = np.nan
    for grid in (values, short, sparse):
        eras = detect_eras_with_gaps(grid, mask, entity="g", config=CONFIG)
        assert (eras["kind"] == "data").all()
    pd.testing.assert_frame_equal(
        detect_eras_with_gaps(values, mask, entity="g", config=CONFIG).drop(columns="kind"),
        plain,
    )


def test_the_coverage_threshold_and_switching_gaps_off() -> None:
    values, mask = _grid()
    values.iloc[2 * 288 : 4 * 288, 1:] = np.nan  # only air temperature: 1 of 5 signals
    # 1/5 = 0.2 of the signals covered is not below the default 0.2: data ...
    assert (detect_eras_with_gaps(values, mask, entity="g", config=CONFIG)["kind"] == "data").all()
    # ... a threshold above it makes it a gap; None turns gap eras off altogether
    wider = EraConfig(signals=SIGNALS, gap_max_coverage=0.25)
    eras = detect_eras_with_gaps(values, mask, entity="g", config=wider)
    assert set(eras.loc[eras["kind"] == "gap", "start"]) == {values.index[2 * 288]}
    values.iloc[2 * 288 : 4 * 288, 0] = np.nan
    off = EraConfig(signals=SIGNALS, gap_min_duration=None)
    assert (detect_eras_with_gaps(values, mask, entity="g", config=off)["kind"] == "data").all()


@pytest.mark.realdata
def test_real_gaps_are_eras_of_their_own(greenhouse_dir: Path) -> None:
    """Knud Jepsen: no sensor reports 2015-10-15 20:45 .. 10-20 06:25. Aarslev: weather data
    end on 2014-02-14, though a run's range goes on to 04-01."""
    catalogue = load_catalogue()
    found: dict[str, pd.DataFrame] = {}
    for preset, start, end in (
        ("knudjepsen", "2015-10-01", "2015-11-01"),
        ("aarslev", "2014-02-01", "2014-04-01"),
    ):
        lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
        results = read_mapping(load_mapping(preset), greenhouse_dir / preset, start=lo, end=hi)
        grid = aggregate([r.frame for r in results], catalogue, start=lo, end=hi).grid
        for entity, (values, mask) in entity_frames(gap_fill(grid, catalogue).grid).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EraWarning)
                found[entity] = detect_eras_with_gaps(
                    values, mask, entity=entity, config=EraConfig()
                )
    gap = (pd.Timestamp("2015-10-15 20:45", tz="UTC"), pd.Timestamp("2015-10-20 06:30", tz="UTC"))
    for entity in ("kj_no3", "kj_no4"):
        eras = found[entity]
        of_gap = eras[(eras["kind"] == "gap") & (eras["start"] == gap[0])]
        assert list(of_gap["level"]) == ["A", "B", "C"] and (of_gap["end"] == gap[1]).all()
        assert _inside(eras, *gap).empty
        _assert_nested(eras)
    weather = found["aarslev_weather"]
    last = weather[weather["level"] == "A"].iloc[-1]
    assert last["kind"] == "gap" and last["end"] == pd.Timestamp("2014-04-01", tz="UTC")
    assert (
        pd.Timestamp("2014-02-14", tz="UTC") < last["start"] < pd.Timestamp("2014-02-15", tz="UTC")
    )


# ---- exact thresholds ---------------------------------------------------------------------------
def _rows(*parts: tuple[int, int, int]) -> np.ndarray:
    """``seen`` from ``(rows, signals read, of signals)`` parts, signals read left to right."""
    return np.concatenate([np.tile(np.arange(d) < k, (n, 1)) for n, k, d in parts])


def test_a_stretch_exactly_min_rows_long_is_a_gap() -> None:
    for min_rows in (1, 4, 7):
        seen = _rows((5, 2, 2), (min_rows, 0, 2), (5, 2, 2))
        assert gap_stretches(seen, block=1, min_rows=min_rows, max_coverage=0.5) == [
            (5, 5 + min_rows)
        ]
        shorter = _rows((5, 2, 2), (min_rows - 1, 0, 2), (5, 2, 2))
        assert gap_stretches(shorter, block=1, min_rows=min_rows, max_coverage=0.5) == []


def test_a_missing_stretch_exactly_gap_min_duration_long_is_a_gap_era() -> None:
    """6 h at 5 minutes: 72 missing rows are a gap era, 71 are data (a 1 h detection step
    whose blocks the stretch does not align with)."""
    values, mask = _grid(days=4)
    a = 2 * 288 + 5
    exact = values.copy()
    exact.iloc[a : a + 72, :] = np.nan
    eras = detect_eras_with_gaps(exact, mask, entity="g", config=CONFIG)
    gaps = eras[eras["kind"] == "gap"]
    assert list(gaps["level"]) == ["A", "B", "C"]
    assert (gaps["start"] == values.index[a]).all() and (gaps["end"] == values.index[a + 72]).all()
    assert (gaps["rows"] == 72).all()
    short = values.copy()
    short.iloc[a : a + 71, :] = np.nan
    assert (detect_eras_with_gaps(short, mask, entity="g", config=CONFIG)["kind"] == "data").all()


@pytest.mark.parametrize(("read", "of", "max_coverage"), [(1, 5, 0.2), (1, 4, 0.25), (1, 2, 0.5)])
def test_a_block_covered_exactly_at_max_coverage_is_not_low(read, of, max_coverage) -> None:
    """A block of 12 rows whose one reading (mid-block) covers exactly ``max_coverage`` of the
    signals is measured: no gap. Any share below it would make the whole block a gap."""
    assert np.mean(np.arange(of) < read) == max_coverage  # exactly, in floating point
    block = np.zeros((12, of), dtype=bool)
    block[6, :read] = True
    seen = np.concatenate([_rows((12, of, of)), block, _rows((12, of, of))])
    assert gap_stretches(seen, block=12, min_rows=12, max_coverage=max_coverage) == []
    # just above the share: the block is mostly missing, and a gap of all its 12 rows
    above = np.nextafter(max_coverage, 1.0)
    assert gap_stretches(seen, block=12, min_rows=12, max_coverage=above) == [(12, 24)]


def test_a_row_read_exactly_at_max_coverage_belongs_to_the_data() -> None:
    """The gap's edge moves out over rows read by fewer than ``max_coverage`` of the signals,
    not over a row read by exactly that share (here 1 of 5 = 0.2)."""
    seen = np.concatenate(
        [_rows((7, 5, 5)), _rows((1, 1, 5)), _rows((12, 0, 5)), _rows((1, 1, 5), (3, 5, 5))]
    )
    # blocks of 4: rows 4-7 covered (full rows), 8-19 not, 20-23 covered
    assert seen[7].mean() == 0.2 and seen[20].mean() == 0.2
    assert gap_stretches(seen, block=4, min_rows=4, max_coverage=0.2) == [(8, 20)]
    # a row read by less than the share is missing: the gap grows over it on both sides
    assert gap_stretches(seen, block=4, min_rows=4, max_coverage=np.nextafter(0.2, 1.0)) == [
        (7, 21)
    ]
