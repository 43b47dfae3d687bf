"""Era counts on a real greenhouse year (Knud Jepsen, 2015-09 to 2016-09), via the real stages."""

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
from eraflow.stages.eras.gaps import detect_eras_with_gaps
from eraflow.stages.eras.penalty_path import FACTORS, choose_penalties
from eraflow.stages.gapfill import gap_fill
from eraflow.stages.ingest import load_mapping, read_mapping

pytestmark = pytest.mark.realdata

#: One year's targets: a third of 10-50 / 50-500 / 200-5000 eras over three years.
RANGES = {"A": (3, 17), "B": (17, 170), "C": (70, 1700)}


@pytest.fixture(scope="module")
def year(greenhouse_dir: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Both compartments' gap-filled grids and fill masks, as the pipeline produces them."""
    catalogue = load_catalogue()
    results = read_mapping(load_mapping("knudjepsen"), greenhouse_dir / "knudjepsen")
    grid = gap_fill(aggregate([r.frame for r in results], catalogue).grid, catalogue).grid
    return entity_frames(grid)


@pytest.mark.parametrize(
    ("entity", "method"), [("kj_no3", "pelt"), ("kj_no3", "bocpd"), ("kj_no4", "pelt")]
)
def test_real_year_counts_in_range_and_nested(
    year: dict[str, tuple[pd.DataFrame, pd.DataFrame]], entity: str, method: str
) -> None:
    values, _ = year[entity]
    assert len(values) > 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EraWarning)  # NO3's CO2 sensor is dead (all 0 ppm)
        eras = detect_eras(values, entity=entity, config=EraConfig(method=method))
    counts = eras.groupby("level").size().to_dict()
    for level, (low, high) in RANGES.items():
        assert low <= counts[level] <= high, (level, counts)
    starts = {lv: set(eras.loc[eras["level"] == lv, "start"]) for lv in "ABC"}
    assert starts["A"] <= starts["B"] <= starts["C"]
    if entity == "kj_no3":
        assert "co2_ppm" not in eras["signals"].iloc[0]
    for level in "ABC":
        assert eras.loc[eras["level"] == level, "rows"].sum() == len(values)
    assert np.isfinite(eras["score"].dropna()).all()


@pytest.mark.parametrize("entity", ["kj_no3", "kj_no4"])
def test_the_elbow_rule_on_a_real_year_keeps_levels_in_range_and_nested(
    year: dict[str, tuple[pd.DataFrame, pd.DataFrame]], entity: str
) -> None:
    values, mask = year[entity]

    def segment(settings: EraConfig) -> pd.DataFrame:
        return detect_eras_with_gaps(values, mask, entity=entity, config=settings, notes=[])

    choice = choose_penalties(segment, EraConfig(), rule="elbow")
    assert set(choice.factors) == {"A", "B", "C"} and set(choice.factors.values()) <= set(FACTORS)
    eras = segment(choice.config)
    data = eras[eras["kind"] == "data"]
    counts = data.groupby("level").size().to_dict()
    for level, (low, high) in RANGES.items():
        assert low <= counts[level] <= high, (level, counts, choice.factors)
    starts = {lv: set(eras.loc[eras["level"] == lv, "start"]) for lv in "ABC"}
    assert starts["A"] <= starts["B"] <= starts["C"]
    path = choice.path
    for level, factor in choice.factors.items():
        at = path[(path["level"] == level) & (path["factor"] == factor)]
        assert at["eras"].tolist() == [counts[level]]  # the path's count is the applied one
        # a plateau or the set penalty: never a factor where the count still falls fast
        if factor != 1.0:
            nxt = path[(path["level"] == level) & (path["factor"] == 2 * factor)]
            assert nxt["eras"].iloc[0] >= 0.75 * counts[level]
