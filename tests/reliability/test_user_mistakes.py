"""Thirty user mistakes, through the installed ``eraflow`` script, as a user makes them.

Each ends with exit status 2 and exactly one line on stderr naming the value and the fix,
before any work: the store a real run filled is byte for byte unchanged. The first cases are
the ones that once ended in a traceback or after half a minute of work (a store path that is
a file, a block never saved, a database that does not answer, an entity or a range the
source does not hold). ``benchmarks/bench_user_mistakes.py`` times every case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GREENHOUSE, REPO
from tests.reliability.test_bad_input import snapshot

ERAFLOW = REPO / ".venv" / "bin" / "eraflow"
KJ = GREENHOUSE / "knudjepsen"
AARSLEV = GREENHOUSE / "aarslev"
REFUSED = "postgresql://postgres@127.0.0.1:9/greenhouse"  # the discard port: nobody listens

# (arguments, words the one line must hold); {store} is a copy of a filled store, {tmp} a folder
MISTAKES: list[tuple[list[str], list[str]]] = [
    (["run", "--store", "{tmp}/a-file"], ["is a file, not a folder"]),
    (["run", "--store", "{tmp}/a-file/store"], ["is a file, not a folder"]),
    (
        ["run", "--store-block", "eraflow-parquet-store/never-saved"],
        ["never-saved", "save it first"],
    ),
    (["run", "--store-block", "never-saved"], ["never-saved", "save it first"]),
    (["run", "--store-block", "a/b/c"], ["store_block", "slug/name"]),
    (
        [
            "run",
            "--source",
            "postgres",
            "--source-block",
            "nobody",
            "--postgres-source",
            '{"table": "sensor_data"}',
        ],
        ["source_block", "nobody", "save it first"],
    ),
    (
        [
            "run",
            "--source",
            "postgres",
            "--source-block",
            "eraflow-parquet-store/x",
            "--postgres-source",
            '{"table": "sensor_data"}',
        ],
        ["source_block", "eraflow-postgres-connection"],
    ),
    (
        ["load", "--mapping", "knudjepsen", "--data-root", str(KJ), "--dsn", REFUSED],
        ["cannot connect", "127.0.0.1:9", "nothing was loaded"],
    ),
    (
        [
            "load",
            "--mapping",
            "knudjepsen",
            "--data-root",
            str(KJ),
            "--dsn",
            REFUSED,
            "--table",
            "x; drop table y",
        ],
        ["table"],
    ),
    (
        ["load", "--mapping", "knudjepsen", "--data-root", "{tmp}/nowhere", "--dsn", REFUSED],
        ["not a folder"],
    ),
    (["load", "--mapping", "knudjepsen", "--data-root", str(KJ)], ["--dsn", "ERAFLOW_PG_DSN"]),
    (
        ["run", "--source", "knudjepsen", "--data-root", str(KJ), "--entities", "kj_no9"],
        ["kj_no9", "kj_no3", "fix --entities"],
    ),
    (
        [
            "run",
            "--source",
            "knudjepsen",
            "--data-root",
            str(KJ),
            "--start",
            "2030-01-01",
            "--end",
            "2030-02-01",
        ],
        ["no data in", "2015-09-06", "choose --start/--end"],
    ),
    (
        [
            "run",
            "--source",
            "aarslev",
            "--data-root",
            str(AARSLEV),
            "--start",
            "2020-01-01",
            "--end",
            "2020-01-02",
            "--freq",
            "10min",
        ],
        ["no data in", "aarslev"],
    ),
    (
        ["run", "--source", "aarslev", "--data-root", str(AARSLEV), "--entities", "celle9"],
        ["celle9", "fix --entities"],
    ),
    (["run", "--start", "2030-01-01", "--end", "2030-01-02"], ["simulator covers", "2024-01-01"]),
    (["run", "--simulator.start", "2025-01-01", "--end", "2024-06-01"], ["no data in"]),
    (["backfill", "--start", "2030-01-01", "--end", "2030-02-01"], ["no data in"]),
    (
        ["backfill", "--start", "2024-01-01", "--end", "2024-01-08", "--chunk", "0D"],
        ["chunk", "positive"],
    ),
    (
        ["backfill", "--start", "2024-01-01", "--end", "2024-01-08", "--chunk", "weekly"],
        ["chunk", "duration"],
    ),
    (
        [
            "backfill",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-08",
            "--chunk-deployment",
            "feature-pipeline/manual",
        ],
        ["PREFECT_API_URL"],
    ),
    (
        [
            "backfill",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-08",
            "--chunk-deployment",
            "manual",
        ],
        ["chunk_deployment", "flow-name/deployment-name"],
    ),
    (
        ["backfill", "--start", "2024-01-01", "--end", "2024-01-08", "--max-concurrent", "0"],
        ["max_concurrent"],
    ),
    (
        ["matrix", "--scope", "sim_a+sim_b", "--level", "A", "--out", "{tmp}/a-file/m.csv"],
        ["a-file", "not a folder"],
    ),
    (
        [
            "matrix",
            "--scope",
            "sim_a+sim_b",
            "--level",
            "A",
            "--out",
            "{tmp}/m.csv",
            "--store-block",
            "eraflow-parquet-store/never-saved",
        ],
        ["never-saved", "save it first"],
    ),
    (["matrix", "--scope", "sim_a+sim_b", "--level", "D", "--out", "{tmp}/m.csv"], ["level"]),
    (["show", "--store", "{tmp}/empty"], ["no run summary", "give --store"]),
    (["run", "--era-levels.level-c.penalty-scale", "-1"], ["penalty_scale", "greater than 0"]),
    (["run", "--era-gaps.max-coverage", "2"], ["max_coverage", "less than or equal to 1"]),
    (["catalogue", "--catalogue", "{tmp}/missing.toml"], ["missing.toml"]),
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store one real run filled, through the console script."""
    store = tmp_path_factory.mktemp("mistakes") / "store"
    done = subprocess.run(
        [
            str(ERAFLOW),
            "run",
            "--store",
            str(store),
            "--simulator.days",
            "2",
            "--selection-levels",
            "A",
        ],
        capture_output=True,
        text=True,
        env=_env(store.parent),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return store


def _env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAFLOW_"))}
    return clean | {"PREFECT_HOME": str(home / "prefect-home"), "MPLBACKEND": "Agg"}


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(("args", "words"), MISTAKES, ids=[" ".join(a)[:70] for a, _ in MISTAKES])
def test_a_mistake_ends_at_once_with_one_line_naming_it(
    args: list[str], words: list[str], filled: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(filled, store)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    before = snapshot(store)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if argv[0] in ("run", "backfill", "matrix") and "--store" not in argv:
        argv += ["--store", str(store)]
    done = subprocess.run(
        [str(ERAFLOW), *argv],
        capture_output=True,
        text=True,
        env=_env(filled.parent),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    err = done.stderr
    assert done.returncode == 2, f"exit {done.returncode}:\n{err[-3000:]}"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("eraflow"), err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert snapshot(store) == before
    assert len(MISTAKES) == 30
