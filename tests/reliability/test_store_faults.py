"""Store faults: a kill inside the selection commit, unreadable partitions, every lock held.

- A child process runs the selection of a scope and is killed (SIGKILL) at a named point of
  the store's commit (``ERAFLOW_STORE_CRASH_AT``); a reader then sees one run's names over the
  same run's values, and a plain re-run repairs everything, leaving no garbage.
- A Parquet file truncated on disk is named by reads and writes; repair moves it aside and
  reports what to re-run; re-running that range heals the store.
- A whole ``eraflow run`` against a store whose every lock file another process holds ends
  within lock_timeout x 3 attempts, naming the lock and its holder.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eraflow.common.errors import DataError
from eraflow.runs.scope import SelectionSettings, read_feature_matrix, select_scope
from eraflow.store import CorruptPartitionError, Key, ParquetStore, Range, ResultStore
from eraflow.store.crash import ENV
from eraflow.store.grid import read_entity_grid, write_grid
from eraflow.store.repair import repair
from eraflow.store.tables import stage_engines
from tests.pg import fresh_database

REPO = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta("1D")
HOUR = pd.Timedelta("1h")
SCOPE, ENTITIES, LEVEL = "a+b", ["a", "b"], "C"


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


# --- a kill inside the selection commit ------------------------------------------------------
def eras_and_features(store: ResultStore, sensor: str, seed: int) -> None:
    """12 eras per entity at level C with three independent random features of ``sensor``."""
    rng = np.random.default_rng(seed)
    for entity in ENTITIES:
        starts = [T0 + i * DAY for i in range(12)]
        eras = pd.DataFrame(
            {
                "entity": entity,
                "level": LEVEL,
                "era_id": range(12),
                "start": starts,
                "end": [s + DAY for s in starts],
                "rows": 288,
                "method": "pelt",
                "signals": sensor,
                "score": 1.0,
                "fingerprint": "f",
                "coverage": 1.0,
                "kind": "data",
                "regime": pd.array([pd.NA] * 12, dtype="Int64"),
            }
        )
        store.replace("eras", eras, Key(entity))
        rows = [
            (entity, LEVEL, era, sensor, feature, rng.normal())
            for era in range(12)
            for feature in ("mean", "std", "max")
        ]
        long = pd.DataFrame(
            rows, columns=["entity", "level", "era_id", "sensor", "feature", "value"]
        ).assign(engine="numpy", run_id="r", config_hash="h")
        store.replace("features", long, Key(entity))


CHILD = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from eraflow.runs.scope import SelectionSettings, select_scope
    kind, where, schema = sys.argv[1:4]
    if kind == "parquet":
        from eraflow.store import ParquetStore
        store = ParquetStore(where)
    else:
        from eraflow.store.postgres import PostgresStore
        store = PostgresStore(where, schema=schema)
    select_scope(store, "a+b", ["a", "b"], "C", settings=SelectionSettings(),
                 step=pd.Timedelta("5min"), run_id="run-2")
    print("selected", flush=True)
    """
)


def select_in_child(kind: str, where: str, schema: str, crash_at: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash_at is not None:
        env[ENV] = crash_at
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, where, schema],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-3000:]
    return done.returncode


@pytest.mark.parametrize(
    ("kind", "point", "sees"),
    [
        ("parquet", "linked:planned", "before"),
        ("parquet", "linked:before-switch", "before"),
        ("parquet", "linked:after-switch", "after"),
        pytest.param("postgres", "replace_many:after-first", "before", marks=pytest.mark.postgres),
    ],
)
def test_a_kill_between_the_selection_and_matrix_writes_leaves_a_consistent_pair(
    kind: str, point: str, sees: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    schema = f"k_{uuid.uuid4().hex[:8]}"
    if kind == "parquet":
        where = str(tmp_path / "store")
        store: ResultStore = ParquetStore(where)
    else:
        from eraflow.store.postgres import PostgresStore

        where = request.getfixturevalue("pg_dsn")
        store = PostgresStore(where, schema=schema)
    settings = SelectionSettings()
    eras_and_features(store, "x", seed=1)
    select_scope(store, SCOPE, ENTITIES, LEVEL, settings=settings, step=HOUR, run_id="run-1")
    before = read_feature_matrix(store, SCOPE, LEVEL)
    # run 2: the same number of features, other names and values
    eras_and_features(store, "y", seed=2)
    assert select_in_child(kind, where, schema, point) == -signal.SIGKILL
    seen = read_feature_matrix(store, SCOPE, LEVEL)
    selection = store.read("selection", Key(SCOPE))
    assert select_in_child(kind, where, schema, None) == 0  # a plain re-run
    after = read_feature_matrix(store, SCOPE, LEVEL)
    assert before.columns.tolist() == ["x__max", "x__mean", "x__std"]
    assert after.columns.tolist() == ["y__max", "y__mean", "y__std"]
    assert not np.allclose(before.to_numpy(), after.to_numpy())
    # what a reader saw after the kill: one run's names over the same run's values
    pd.testing.assert_frame_equal(seen, before if sees == "before" else after)
    assert set(selection["run_id"]) == {"run-1" if sees == "before" else "run-2"}
    if kind == "parquet":  # no garbage: one version, no temporary files
        root = Path(where)
        scoped = sorted(p.name for p in (root / ".scoped").iterdir())
        assert scoped == [".lock", "current", os.readlink(root / ".scoped" / "current")]
        assert not list(root.rglob("*.tmp")) and not list(root.rglob(".trash-*"))
        assert len(pd.read_parquet(root / "selection")) == 3
        assert len(pd.read_parquet(root / "feature_matrix")) == 24
    store.close()


# --- unreadable partitions ----------------------------------------------------------------
def wide(entity: str, start: pd.Timestamp, hours: int, base: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.date_range(start, periods=hours, freq="1h"),
            "entity": entity,
            "x": base + np.arange(hours, dtype=float),
            "filled__x": False,
        }
    )


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


JAN30 = pd.Timestamp("2024-01-30", tz="UTC")
FEB = pd.Timestamp("2024-02-01", tz="UTC")


def test_a_truncated_grid_partition_is_named_repaired_and_healed_by_a_rerun(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    write_grid(store, wide("a", JAN30, 96, 0.0), start=JAN30, end=JAN30 + 96 * HOUR)
    january, february = (
        tmp_path / "grid" / "a" / "2024-01.parquet",
        tmp_path / "grid/a/2024-02.parquet",
    )
    truncate(january)
    feb_bytes = february.read_bytes()

    with pytest.raises(CorruptPartitionError) as info:
        read_entity_grid(store, "a", step=HOUR)
    assert str(january) in str(info.value) and "eraflow repair" in str(info.value)
    # a write covering part of the file (and another month) fails and changes nothing
    with pytest.raises(CorruptPartitionError, match="covers only part of it"):
        write_grid(store, wide("a", JAN30 + DAY, 36, 50.0), start=JAN30 + DAY, end=FEB + 12 * HOUR)
    assert february.read_bytes() == feb_bytes and not list(tmp_path.rglob("*.tmp"))

    report = repair(store)
    (moved,) = report.quarantined
    assert (moved.table, moved.owner) == ("grid", "a")
    assert moved.key == Key("a", {"time": Range(pd.Timestamp("2024-01-01", tz="UTC"), FEB)})
    assert moved.moved_to.is_file() and moved.moved_to.is_relative_to(tmp_path / ".quarantine")
    assert moved.moved_to.parent == tmp_path / ".quarantine" / "grid" / "a"
    assert "re-run 'a' over [2024-01-01, 2024-02-01)" in "\n".join(report.lines())
    assert report.reruns == [("grid", "a", moved.key)]
    values, _ = read_entity_grid(store, "a", step=HOUR)  # readable again: February only
    assert values.index.min() == FEB and len(values) == 48
    assert repair(store).clean  # a second repair finds nothing

    # the re-run of the reported range heals the store
    write_grid(store, wide("a", JAN30, 48, 0.0), start=moved.key.where["time"].low, end=FEB)
    values, _ = read_entity_grid(store, "a", step=HOUR)
    assert values["x"].tolist() == list(np.arange(96.0))
    assert len(pd.read_parquet(tmp_path / "grid")) == 96


def features(entity: str, era: int, value: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": entity,
            "level": "C",
            "era_id": era,
            "sensor": "x",
            "feature": ["mean", "max"],
            "value": value,
            "engine": "numpy",
            "run_id": "r",
            "config_hash": "h",
        }
    )


def test_a_write_covering_a_whole_unreadable_file_moves_it_aside_and_proceeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eraflow")
    store = ParquetStore(tmp_path)
    key = Key("a", {"level": "C", "era_id": [3], "engine": stage_engines("engine")})
    store.replace("features", features("a", 3, 1.0), key)
    path = tmp_path / "features" / "a" / "C" / "3-engine.parquet"
    truncate(path)
    with pytest.raises(CorruptPartitionError, match=r"3-engine\.parquet"):
        store.read("features", Key("a"))
    store.replace("features", features("a", 3, 2.0), key)  # the era's features, recomputed
    assert store.read("features", Key("a"))["value"].tolist() == [2.0, 2.0]
    (moved,) = (tmp_path / ".quarantine" / "features" / "a" / "C").iterdir()
    assert moved.name.startswith("3-engine.") and "moved unreadable" in caplog.text


def test_repair_of_a_feature_file_drops_its_ledger_rows_so_the_era_is_recomputed(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    for era in (1, 2):
        store.replace(
            "features",
            features("a", era, float(era)),
            Key("a", {"level": "C", "era_id": [era], "engine": stage_engines("engine")}),
        )
    ledger = pd.DataFrame(
        {
            "entity": "a",
            "level": "C",
            "era_id": [1, 2],
            "stage": "engine",
            "fingerprint": "f",
            "config_hash": "h",
            "values": 2,
            "run_id": "r",
            "written_at": T0,
        }
    )
    store.replace("feature_ledger", ledger, Key("a", {"level": "C"}))
    truncate(tmp_path / "features" / "a" / "C" / "2-engine.parquet")
    report = repair(store)
    assert [q.path.as_posix() for q in report.quarantined] == ["features/a/C/2-engine.parquet"]
    assert report.quarantined[0].key == Key(
        "a", {"level": "C", "era_id": [2], "engine": ["cupy", "greenhouse", "numpy"]}
    )
    assert report.invalidated and "era 2 stage engine" in report.invalidated[0]
    assert store.read("feature_ledger", Key("a"))["era_id"].tolist() == [1]
    assert store.read("features", Key("a"))["era_id"].tolist() == [1, 1]


def test_a_truncated_matrix_is_named_repair_drops_the_pair_and_a_rerun_heals(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    eras_and_features(store, "x", seed=1)
    settings = SelectionSettings()
    select_scope(store, SCOPE, ENTITIES, LEVEL, settings=settings, step=HOUR, run_id="run-1")
    good = read_feature_matrix(store, SCOPE, LEVEL)
    files = sorted((tmp_path / "feature_matrix").rglob("*.parquet"))
    assert len(files) == 2
    truncate(files[0])
    with pytest.raises(CorruptPartitionError, match="feature_matrix"):
        read_feature_matrix(store, SCOPE, LEVEL)
    report = repair(store)
    assert [q.table for q in report.quarantined] == ["feature_matrix"]
    assert report.quarantined[0].rerun == "re-run selection for scope 'a+b', level C"
    assert "selection (3 rows) and feature matrix" in report.invalidated[0]
    with pytest.raises(DataError, match="no feature matrix stored"):
        read_feature_matrix(store, SCOPE, LEVEL)  # never a partial matrix
    select_scope(store, SCOPE, ENTITIES, LEVEL, settings=settings, step=HOUR, run_id="run-2")
    pd.testing.assert_frame_equal(read_feature_matrix(store, SCOPE, LEVEL), good)


# --- every lock held: a whole run ends -----------------------------------------------------
HOLD = textwrap.dedent(
    """
    import contextlib, sys, time
    from pathlib import Path
    from eraflow.store.locks import file_lock
    with contextlib.ExitStack() as stack:
        for path in sys.argv[1:]:
            stack.enter_context(file_lock(Path(path), timeout=5))
        print("held", flush=True)
        time.sleep(900)
    """
)


def eraflow_run(store: Path, home: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(home), "COLUMNS": "200"}
    args = [sys.executable, "-m", "flows.cli", "run", "--simulator.days", "2"]
    began = time.monotonic()
    done = subprocess.run(
        [*args, "--store", str(store)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done, time.monotonic() - began


@pytest.mark.slow
def test_a_run_on_a_store_whose_every_lock_is_held_ends_naming_the_lock(tmp_path: Path) -> None:
    """Default lock_timeout (30 s), the task layer's 3 attempts: measured 118 s end to end."""
    store = tmp_path / "store"
    done, _ = eraflow_run(store, tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    locks = sorted(str(p) for p in store.rglob("*.lock"))
    assert len(locks) >= 10
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, *locks], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done, seconds = eraflow_run(store, tmp_path / "home")
    finally:
        holder.kill()
        holder.wait()
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert seconds < 150, seconds
    assert "LockTimeoutError" in output and f"held by pid {holder.pid} on host" in output
    assert any(lock in output for lock in locks)
    assert "lock_timeout 30 s" in output
    print(f"a run with every lock held ended after {seconds:.0f} s")


def test_a_selection_rerun_over_a_truncated_matrix_moves_it_aside_and_writes_both(
    tmp_path: Path,
) -> None:
    store = ParquetStore(tmp_path)
    eras_and_features(store, "x", seed=1)
    settings = SelectionSettings()
    select_scope(store, SCOPE, ENTITIES, LEVEL, settings=settings, step=HOUR, run_id="run-1")
    good = read_feature_matrix(store, SCOPE, LEVEL)
    truncate(sorted((tmp_path / "feature_matrix").rglob("*.parquet"))[1])
    # the (scope, level) commit covers the whole file: no repair needed
    select_scope(store, SCOPE, ENTITIES, LEVEL, settings=settings, step=HOUR, run_id="run-2")
    pd.testing.assert_frame_equal(read_feature_matrix(store, SCOPE, LEVEL), good)
    assert len(list((tmp_path / ".quarantine" / "feature_matrix").rglob("*.parquet"))) == 1
    assert set(store.read("selection", Key(SCOPE))["run_id"]) == {"run-2"}


@pytest.mark.postgres
def test_repair_of_a_postgres_store_has_nothing_to_scan(pg_dsn: str) -> None:
    from eraflow.store.postgres import PostgresStore

    with PostgresStore(pg_dsn, schema=f"r_{uuid.uuid4().hex[:8]}") as store:
        report = repair(store)
    assert report.clean and report.checked == 0 and "nothing to scan" in report.lines()[0]
