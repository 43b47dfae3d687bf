"""Local wall-clock → UTC under each DST policy (Europe/Copenhagen)."""

from __future__ import annotations

import pandas as pd
import pytest

from eraflow.common.errors import IngestError
from eraflow.stages.ingest.timezones import localise_to_utc

TZ = "Europe/Copenhagen"


def naive(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(s) for s in stamps])


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def test_repeated_hour_is_inferred_from_order() -> None:
    # A true fall-back record: 02:30 appears twice (CEST, then CET).
    local = naive("2015-10-25 01:30", "2015-10-25 02:30", "2015-10-25 02:30", "2015-10-25 03:30")
    out = localise_to_utc(local, timezone=TZ, ambiguous="infer", nonexistent="raise", where="f")
    assert list(out.utc) == utc(
        "2015-10-24 23:30", "2015-10-25 00:30", "2015-10-25 01:30", "2015-10-25 02:30"
    )
    assert out.dropped_ambiguous == 0


def test_single_ambiguous_hour_cannot_be_inferred() -> None:
    local = naive("2015-10-25 01:55", "2015-10-25 02:00", "2015-10-25 03:00")
    with pytest.raises(IngestError, match=r"cannot be inferred.*'drop'"):
        localise_to_utc(local, timezone=TZ, ambiguous="infer", nonexistent="raise", where="f")


@pytest.mark.parametrize(
    ("policy", "expected", "dropped"),
    [
        ("drop", ["2015-10-24 23:55", None, "2015-10-25 02:00"], 1),
        ("earliest", ["2015-10-24 23:55", "2015-10-25 00:00", "2015-10-25 02:00"], 0),
        ("latest", ["2015-10-24 23:55", "2015-10-25 01:00", "2015-10-25 02:00"], 0),
    ],
)
def test_ambiguous_policies(policy: str, expected: list[str | None], dropped: int) -> None:
    local = naive("2015-10-25 01:55", "2015-10-25 02:00", "2015-10-25 03:00")
    out = localise_to_utc(
        local,
        timezone=TZ,
        ambiguous=policy,
        nonexistent="raise",  # type: ignore[arg-type]
        where="f",
    )
    got = [None if pd.isna(t) else t for t in out.utc]
    assert got == [None if e is None else pd.Timestamp(e, tz="UTC") for e in expected]
    assert out.dropped_ambiguous == dropped


def test_nonexistent_hour() -> None:
    local = naive("2016-03-27 01:55", "2016-03-27 02:30", "2016-03-27 03:00")
    with pytest.raises(IngestError, match=r"1 timestamps do not exist.*2016-03-27 02:30"):
        localise_to_utc(local, timezone=TZ, ambiguous="raise", nonexistent="raise", where="f")
    dropped = localise_to_utc(local, timezone=TZ, ambiguous="raise", nonexistent="drop", where="f")
    assert dropped.dropped_nonexistent == 1
    assert pd.isna(dropped.utc[1])
    assert [dropped.utc[0], dropped.utc[2]] == utc("2016-03-27 00:55", "2016-03-27 01:00")
    shifted = localise_to_utc(
        local, timezone=TZ, ambiguous="raise", nonexistent="shift_forward", where="f"
    )
    assert shifted.utc[1] == pd.Timestamp("2016-03-27 01:00", tz="UTC")


def test_ambiguous_raise_names_the_time() -> None:
    with pytest.raises(IngestError, match=r"ambiguous.*2015-10-25 02:10"):
        localise_to_utc(
            naive("2015-10-25 02:10"),
            timezone=TZ,
            ambiguous="raise",
            nonexistent="raise",
            where="f",
        )


def test_utc_passthrough() -> None:
    out = localise_to_utc(
        naive("2016-03-27 02:30"), timezone="UTC", ambiguous="raise", nonexistent="raise", where="f"
    )
    assert list(out.utc) == utc("2016-03-27 02:30")
