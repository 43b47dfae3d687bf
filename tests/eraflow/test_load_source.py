"""The loader command: real export slice → PostgreSQL → read back equal to the file reader."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from eraflow.runs.load_source import main
from eraflow.stages.ingest import load_mapping, read_mapping
from eraflow.stages.ingest.postgres_source import PostgresSourceConfig, read_postgres
from tests.pg import fresh_database

pytestmark = pytest.mark.postgres

LINES = 3000


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    """A fresh database for this module, dropped afterwards."""
    with fresh_database() as (dsn, _):
        yield dsn


@pytest.fixture(scope="module")
def kj_slice(greenhouse_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 3000 lines of NO3_LAMPEGRP_1.csv and the preset's mapping of that file."""
    root = tmp_path_factory.mktemp("kj")
    source = greenhouse_dir / "knudjepsen" / "NO3_LAMPEGRP_1.csv"
    with source.open("rb") as handle:
        head = b"".join(handle.readline() for _ in range(LINES))
    (root / "NO3_LAMPEGRP_1.csv").write_bytes(head)
    preset = (
        resources.files("eraflow.stages.ingest")
        .joinpath("presets/knudjepsen.toml")
        .read_text(encoding="utf-8")
    )
    blocks = preset.split("[[sources]]")
    no3 = next(b for b in blocks[1:] if 'name = "kj_no3_climate"' in b)
    mapping = root / "kj_no3.toml"
    mapping.write_text(f"[[sources]]{no3}", encoding="utf-8")
    return root, mapping


def _run(root: Path, mapping: Path, dsn: str, *extra: str) -> int:
    return main(["--mapping", str(mapping), "--data-root", str(root), "--dsn", dsn, *extra])


@pytest.mark.realdata
@pytest.mark.parametrize("layout", ["wide", "long"])
def test_load_reads_back_like_the_file_reader_and_reloads_idempotently(
    kj_slice: tuple[Path, Path], dsn: str, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, mapping = kj_slice
    table = f"kj_{layout}"
    assert _run(root, mapping, dsn, "--table", table, "--layout", layout) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert first.startswith("loaded ") and f"into {table}" in first

    files = read_mapping(load_mapping(mapping), root)[0].frame
    config = (
        PostgresSourceConfig(table=table, name="kj_no3_climate")
        if layout == "wide"
        else PostgresSourceConfig(table=table, name="kj_no3_climate", layout="long")
    )
    back = read_postgres(config, dsn).frame
    pd.testing.assert_frame_equal(back, files, check_dtype=False)
    # spot values straight from the export (3rd data line: 07-09-2015 00:10 local = 22:10 UTC)
    spot = back.set_index(["sensor", "time"])["value"]
    at = pd.Timestamp("2015-09-06 22:10", tz="UTC")
    line = (root / "NO3_LAMPEGRP_1.csv").read_text(encoding="utf-8").splitlines()[5].split(";")
    assert spot.loc[("air_temp_c", at)] == float(line[1].replace(",", "."))
    assert spot.loc[("co2_ppm", at)] == float(line[4].replace(",", "."))

    with psycopg.connect(dsn) as conn:
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert _run(root, mapping, dsn, "--table", table, "--layout", layout) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    with psycopg.connect(dsn) as conn:
        again = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert again == count
    pd.testing.assert_frame_equal(read_postgres(config, dsn).frame, back)


@pytest.mark.realdata
def test_a_range_loads_only_that_range(kj_slice: tuple[Path, Path], dsn: str) -> None:
    root, mapping = kj_slice
    assert (
        _run(
            root, mapping, dsn, "--table", "kj_day", "--start", "2015-09-07", "--end", "2015-09-08"
        )
        == 0
    )
    back = read_postgres(PostgresSourceConfig(table="kj_day"), dsn).frame
    assert back["time"].min() >= pd.Timestamp("2015-09-07", tz="UTC")
    assert back["time"].max() < pd.Timestamp("2015-09-08", tz="UTC")


def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "--mapping",
                "knudjepsen",
                "--data-root",
                str(tmp_path),
                "--dsn",
                dsn,
                "--table",
                "x; drop table y",
            ]
        )
        == 2
    )
    assert "schema.table" in capsys.readouterr().err
    assert main(["--mapping", "nope", "--data-root", str(tmp_path), "--dsn", dsn]) == 2
    assert "neither a preset" in capsys.readouterr().err
    secret = "hunter2-secret"
    assert (
        main(
            [
                "--mapping",
                "knudjepsen",
                "--data-root",
                str(tmp_path),
                "--dsn",
                f"postgresql://postgres:{secret}@127.0.0.1:5432/x",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no file matches" in err and secret not in err


def test_an_empty_range_says_so_instead_of_an_sql_error(
    greenhouse_dir: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = greenhouse_dir / "knudjepsen"
    args = ["--mapping", "knudjepsen", "--data-root", str(root), "--dsn", dsn]
    assert main([*args, "--start", "2030-01-01", "--end", "2030-01-02"]) == 2
    assert "nothing to load" in capsys.readouterr().err
    assert main([*args, "--start", "2030-01-02", "--end", "2030-01-01"]) == 2
    assert "empty range" in capsys.readouterr().err
