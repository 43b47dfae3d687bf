"""Backfill chunks and the daily window."""

from __future__ import annotations

import pandas as pd
import pytest

from eraflow.common.errors import ConfigError
from eraflow.common.ranges import previous_day, split_range


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_chunks_cover_the_range_exactly() -> None:
    chunks = split_range("2024-01-01", "2024-01-17", "7D")
    assert chunks == [
        (utc("2024-01-01"), utc("2024-01-08")),
        (utc("2024-01-08"), utc("2024-01-15")),
        (utc("2024-01-15"), utc("2024-01-17")),
    ]
    assert split_range("2024-01-01", "2024-01-02", "7D") == [(utc("2024-01-01"), utc("2024-01-02"))]


def test_bad_chunks() -> None:
    with pytest.raises(ConfigError, match="empty range"):
        split_range("2024-01-02", "2024-01-01", "1D")
    with pytest.raises(ConfigError, match="not a duration"):
        split_range("2024-01-01", "2024-01-02", "weekly")
    with pytest.raises(ConfigError, match="positive"):
        split_range("2024-01-01", "2024-01-02", "0D")


def test_previous_day() -> None:
    assert previous_day("2024-03-05T03:00:00+01:00") == (utc("2024-03-04"), utc("2024-03-05"))
