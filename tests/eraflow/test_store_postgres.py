"""What is particular to the PostgreSQL store: migrations, transactions, secrets, names."""

from __future__ import annotations

import logging
import pickle
import threading
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from eraflow.common.errors import ConfigError, StoreError
from eraflow.common.pg import PostgresConnectionError, split_password
from eraflow.store import TABLES, Key
from eraflow.store.grid import write_grid
from eraflow.store.pg_schema import LATEST_VERSION, MIGRATIONS, applied_versions, migrate
from eraflow.store.postgres import PostgresStore
from tests.pg import fresh_database

pytestmark = pytest.mark.postgres

T0 = pd.Timestamp("2024-01-30", tz="UTC")
HOUR = pd.Timedelta("1h")
PG_TYPES = {
    "label": "text",
    "text": "text",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "timestamptz": "timestamp with time zone",
    "floats": "double precision[]",
}


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_dsn, schema=f"t_{uuid.uuid4().hex[:8]}") as opened:
        yield opened


def wide(entity: str, periods: int, base: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.date_range(T0, periods=periods, freq="1h"),
            "entity": entity,
            "x": base + np.arange(periods, dtype=float),
            "filled__x": False,
        }
    )


def test_migrates_once_and_the_tables_are_the_declared_ones(
    store: PostgresStore, pg_dsn: str
) -> None:
    conn = store.connection()
    assert applied_versions(conn, store.schema) == [m.version for m in MIGRATIONS]
    assert migrate(conn, store.schema) == []  # idempotent
    for name, spec in TABLES.items():
        declared = [(column, PG_TYPES[kind]) for column, kind in spec.columns]
        assert store.table_columns(name) == declared, name
    again = PostgresStore(pg_dsn, schema=store.schema)
    assert applied_versions(again.connection(), store.schema)[-1] == LATEST_VERSION
    again.close()


def test_a_v2_store_upgrades_and_keeps_grid_eras_and_features(pg_dsn: str) -> None:
    schema = f"old_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        with conn.transaction():
            for migration in MIGRATIONS[:2]:
                for statement in migration.statements:
                    conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.eraflow_schema_version (version integer PRIMARY KEY, "
                "description text NOT NULL, applied_at timestamptz NOT NULL "
                "DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("INSERT INTO {}.eraflow_schema_version VALUES (1, 'a'), (2, 'b')").format(
                sql.Identifier(schema)
            )
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.eras (entity, level, era_id, signals) VALUES "
                "('a', 'A', 1, '\"air_temp_c,co2_ppm\"'::jsonb)"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("CREATE TABLE {}.coverage (entity text, all_missing boolean)").format(
                sql.Identifier(schema)
            )
        )
    with PostgresStore(pg_dsn, schema=schema) as upgraded:
        eras = upgraded.read("eras", Key("a"))
        assert eras["signals"].tolist() == ["air_temp_c,co2_ppm"]  # jsonb string -> text
        assert upgraded.table_columns("coverage")[2] == ("day", "timestamp with time zone")


def test_failure_inside_the_transaction_rolls_everything_back(store: PostgresStore) -> None:
    write_grid(store, wide("a", 5, 0.0), start=T0, end=T0 + 5 * HOUR)
    bad = pd.DataFrame(
        {"entity": "a", "sensor": "x", "time": [T0], "value": [1.0], "filled": [None]}
    )  # NULL into NOT NULL: fails after the DELETE
    with pytest.raises(StoreError, match="rolled back"):
        store.replace("grid", bad, Key("a"))
    assert store.read("grid", Key("a"))["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_pickles_without_the_connection(store: PostgresStore) -> None:
    write_grid(store, wide("a", 3, 0.0), start=T0, end=T0 + 3 * HOUR)
    clone = pickle.loads(pickle.dumps(store))
    assert len(clone.read("grid", Key("a"))) == 3
    clone.close()


def test_hostile_schema_and_owner_names_are_quoted_or_bound(pg_dsn: str) -> None:
    hostile = 'x"; DROP TABLE y; --'
    with PostgresStore(pg_dsn, schema=hostile) as s:
        write_grid(s, wide(hostile, 2, 0.0), start=T0, end=T0 + 2 * HOUR)
        assert s.read("grid", Key(hostile))["value"].tolist() == [0.0, 1.0]
        assert s.owners("grid") == [hostile]
    with pytest.raises(ConfigError, match="schema name"):
        PostgresStore(pg_dsn, schema="x" * 64)


def test_password_never_reaches_logs_or_errors(
    caplog: pytest.LogCaptureFixture, pg_dsn: str
) -> None:
    secret = "s3cr3t-P4ssw0rd"
    caplog.set_level(logging.DEBUG)
    conninfo, password = split_password(
        f"postgresql://postgres:{secret}@127.0.0.1:1/x?connect_timeout=2"
    )
    assert password == secret and secret not in conninfo
    with pytest.raises(PostgresConnectionError) as info:
        PostgresStore(f"postgresql://postgres:{secret}@127.0.0.1:1/x?connect_timeout=2")
    assert secret not in str(info.value) and "127.0.0.1:1" in str(info.value)
    with pytest.raises(ConfigError) as bad:
        split_password(f"host=h password={secret} port")
    assert secret not in str(bad.value)
    with PostgresStore(pg_dsn, password=secret, schema="pw") as s:
        write_grid(s, wide("a", 2, 0.0), start=T0, end=T0 + 2 * HOUR)
        assert secret not in repr(s) and secret not in s.describe()
        assert secret not in repr(s.connection())
    assert secret not in caplog.text


def at_once(*calls: Callable[[], object]) -> list[BaseException]:
    """Run ``calls`` in threads released together; the exceptions they raised."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_overlapping_replaces_of_one_range_both_succeed_and_leave_one_writers_rows(
    pg_dsn: str,
) -> None:
    """Two runs replacing one entity's range at once: no duplicate key, no mix of rows.

    Each writer's rows carry its own values; both overlap on most keys. Before replaces were
    serialised per (table, owner), the second transaction's insert hit the first's new rows.
    """
    schema = f"o_{uuid.uuid4().hex[:8]}"
    frames = {
        name: pd.DataFrame(
            {
                "entity": "gh",
                "level": "C",
                "era_id": np.repeat(np.arange(offset, offset + 20), 100),
                "sensor": "s",
                "feature": np.tile([f"f{i}" for i in range(100)], 20),
                "value": value,
                "engine": "numpy",
                "run_id": name,
                "config_hash": "h",
            }
        )
        for name, offset, value in (("one", 0, 1.0), ("two", 2, 2.0))
    }
    key = Key("gh", {"level": "C"})
    with (
        PostgresStore(pg_dsn, schema=schema) as first,
        PostgresStore(pg_dsn, schema=schema) as second,
    ):
        first.replace("features", frames["one"], key)
        for round_ in range(20):
            errors = at_once(
                lambda: first.replace("features", frames["one"], key),
                lambda: second.replace("features", frames["two"], key),
            )
            assert not errors, (round_, errors)  # both succeed
            stored = first.read("features", key)
            writers = set(stored["run_id"].astype(str))
            assert len(writers) == 1, (round_, writers)  # one writer's rows, none of the other's
            (last,) = writers
            expected = frames[last]
            assert len(stored) == len(expected) == 2000  # no duplicates, nothing lost
            assert stored["era_id"].tolist() == expected["era_id"].tolist()
            assert (stored["value"] == expected["value"].iloc[0]).all()


def test_sessions_ask_the_server_to_probe_a_silent_client(store: PostgresStore) -> None:
    """A worker host cut off mid-transaction loses its session (and locks) in about a minute."""
    from psycopg import sql

    from eraflow.store.postgres import DEAD_CLIENT_PROBES

    for setting, value in DEAD_CLIENT_PROBES.items():  # the system's: 7200 s, 75 s, 9 probes
        show = sql.SQL("SHOW {}").format(sql.Identifier(setting))
        shown = store.connection().execute(show).fetchone()
        assert shown is not None and shown[0] == str(value), setting
