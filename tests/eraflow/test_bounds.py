"""Bounded work: the grid a run will build is known, bounded and stated before any work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import ConfigError
from eraflow.config import PipelineConfig
from eraflow.runs.bounds import check_grid_span, plan_grid, stray_rows
from eraflow.runs.preflight import check_config
from tests.conftest import REPO

STEP = pd.Timedelta("5min")


def micros(*stamps: str) -> np.ndarray:
    return np.array([pd.Timestamp(s, tz="UTC").value // 1000 for s in stamps], dtype=np.int64)


def two_days(extra: tuple[str, ...] = ()) -> np.ndarray:
    times = pd.date_range("2024-03-01", "2024-03-03", freq="5min", inclusive="left", tz="UTC")
    return np.sort(np.concatenate([micros(*extra), times.as_unit("us").asi8]))


def test_the_plan_counts_the_grid_rows_as_the_aggregation_builds_them() -> None:
    first, last = (
        pd.Timestamp("2024-03-01 00:03", tz="UTC"),
        pd.Timestamp("2024-03-02 23:58", tz="UTC"),
    )
    unbounded = plan_grid({"e": (first, last)}, start=None, end=None, step=STEP)
    # 00:00 .. 23:55 of the 2nd: two days of 5-minute rows, counted by hand
    assert unbounded.entities[0].rows == 2 * 288
    bounded = plan_grid(
        {"e": (first, last)},
        start=pd.Timestamp("2024-03-01 12:00", tz="UTC"),
        end=pd.Timestamp("2024-03-02", tz="UTC"),
        step=STEP,
    )
    assert bounded.entities[0].rows == 144
    assert bounded.describe() == (
        "1 entity, 2024-03-01 12:00 .. 2024-03-01 23:55 UTC at 5min: 144 grid rows"
    )


def test_a_span_over_the_limit_is_refused_naming_it() -> None:
    far = plan_grid(
        {"e": (pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-03", tz="UTC"))},
        start=pd.Timestamp("1900-01-01", tz="UTC"),
        end=pd.Timestamp("2200-01-01", tz="UTC"),
        step=STEP,
    )
    with pytest.raises(ConfigError, match=r"grid of 300 years .* max_grid_span 20 years"):
        check_grid_span(far, max_span=pd.Timedelta("7305D"))
    century = plan_grid(
        {"e": (pd.Timestamp("1950-01-01", tz="UTC"), pd.Timestamp("2049-12-31", tz="UTC"))},
        start=None,
        end=None,
        step=STEP,
    )
    assert century.entities[0].rows == (36524 * 288) + 1  # 1950-01-01 .. 2049-12-31 00:00
    check_grid_span(century, max_span=pd.Timedelta("36525D"))  # within: passes
    with pytest.raises(ConfigError, match="grid of 100 years"):
        check_grid_span(century, max_span=pd.Timedelta("36523D"))


@pytest.mark.parametrize("stray", ["1900-01-01 00:00", "2031-06-01 12:00"])
def test_one_row_far_from_two_days_is_stray(stray: str) -> None:
    found = stray_rows("e", two_days((stray,)))
    assert found is not None
    assert found.times == (pd.Timestamp(stray, tz="UTC"),)
    assert found.before == (stray < "2024")
    assert found.rest == (
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
        pd.Timestamp("2024-03-02 23:55", tz="UTC"),
    )
    assert "1 stray row(s) at " + stray in found.describe("x")


def test_outages_seasons_and_a_year_of_data_are_not_stray() -> None:
    year = pd.date_range("2015-09-07", "2016-09-08", freq="5min", tz="UTC").as_unit("us").asi8
    outage = year[(year < micros("2015-10-15")[0]) | (year > micros("2015-10-20")[0])]
    assert stray_rows("e", outage) is None  # a 5-day outage is data
    two_seasons = np.concatenate([two_days(), two_days() + 365 * 86_400_000_000])
    assert stray_rows("e", two_seasons) is None  # many rows on both sides
    assert stray_rows("e", two_days(("2024-01-20",))) is None  # 40 days off: under 90 days
    assert stray_rows("e", micros("2024-03-01")) is None


def write_source(folder: Path, extra_rows: list[str]) -> Path:
    """Two days of a 5-minute CSV export (plus ``extra_rows``) and its mapping file."""
    times = pd.date_range("2024-03-01", "2024-03-03", freq="5min", inclusive="left")
    lines = (
        ["t,temp"]
        + extra_rows
        + [f"{t:%Y-%m-%d %H:%M:%S},{20 + (i % 7) / 10}" for i, t in enumerate(times)]
    )
    (folder / "data").mkdir()
    (folder / "data" / "house.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = folder / "house.toml"
    mapping.write_text(
        '[[sources]]\nname = "house"\nfiles = ["house.csv"]\ndelimiter = ","\n'
        'header_rows = 1\nentity = "house"\n'
        'time = { columns = ["t"], format = "%Y-%m-%d %H:%M:%S" }\n'
        'columns = [{ column = "temp", sensor = "air_temp_c" }]\n',
        encoding="utf-8",
    )
    return mapping


def test_the_preflight_refuses_a_stray_row_and_states_the_plan_otherwise(tmp_path: Path) -> None:
    mapping = write_source(tmp_path, ["1900-01-01 00:00:00,19.5"])
    config = PipelineConfig.build(source=str(mapping), data_root=tmp_path / "data")
    with pytest.raises(
        ConfigError, match=r"1 stray row\(s\) at 1900-01-01 00:00 UTC lie 124 years before"
    ):
        check_config(config)
    inside = PipelineConfig.build(
        source=str(mapping), data_root=tmp_path / "data", start="2024-03-01", end="2024-03-02"
    )
    plan = check_config(inside)  # the stray row is outside the range asked: no error
    assert plan is not None and plan.rows == 288


@pytest.mark.slow
def test_a_stray_1900_row_ends_the_command_at_once_and_writes_nothing(tmp_path: Path) -> None:
    """The acceptance case: one stray 1900 row beside two days of 2024 (was: 6 GiB, > 120 s)."""
    mapping = write_source(tmp_path, ["1900-01-01 00:00:00,19.5"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    done = eraflow(mapping, tmp_path, env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and "stray row(s) at 1900-01-01" in done.stderr
    assert not (tmp_path / "store").exists()
    clean = tmp_path / "clean"
    clean.mkdir()
    far = ("--start", "1900-01-01", "--end", "2200-01-01")
    done = eraflow(write_source(clean, []), clean, env, *far)
    assert done.returncode == 2 and "max_grid_span" in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and not (clean / "store").exists()


def eraflow(
    mapping: Path, folder: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``eraflow run`` of ``mapping`` over ``folder``'s data into ``folder``'s store."""
    command = [str(REPO / ".venv" / "bin" / "eraflow"), "run", "--source", str(mapping)]
    command += ["--data-root", str(folder / "data"), "--store", str(folder / "store"), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, timeout=120
    )
