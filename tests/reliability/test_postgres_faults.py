"""PostgreSQL faults: a backend terminated mid-write, a lock held past lock_timeout.

Both must roll back (the stored rows stay what they were), raise a retryable error with a
message that says what happened, and succeed when retried.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from eraflow.common.pg import PostgresConnectionError
from eraflow.common.retry import is_transient
from eraflow.store import Key
from eraflow.store.postgres import PostgresStore
from tests.pg import fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


def features(n_eras: int, value: float) -> pd.DataFrame:
    names = [f"f{i}" for i in range(500)]
    per = 20 * len(names)
    return pd.DataFrame(
        {
            "entity": "gh",
            "level": "C",
            "era_id": np.repeat(np.arange(n_eras), per),
            "sensor": np.tile(np.repeat([f"s{i}" for i in range(20)], len(names)), n_eras),
            "feature": np.tile(names, 20 * n_eras),
            "value": value,
            "engine": "numpy",
            "run_id": "r",
            "config_hash": "h",
        }
    )


def test_a_backend_terminated_mid_copy_rolls_back_and_a_retry_completes(pg_dsn: str) -> None:
    schema = f"f_{uuid.uuid4().hex[:6]}"
    store = PostgresStore(pg_dsn, schema=schema)
    store.replace("features", features(2, 1.0), Key("gh"))
    big = features(40, 2.0)  # 400,000 rows: a COPY that takes a while
    admin = psycopg.connect(pg_dsn, autocommit=True)
    killed: list[int] = []

    def terminate_the_copy() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            rows = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query ILIKE 'COPY %%eraflow_stage_features%%'"
            ).fetchall()
            for (pid,) in rows:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=terminate_the_copy)
    killer.start()
    with pytest.raises(PostgresConnectionError) as info:
        store.replace("features", big, Key("gh"))
    killer.join()
    assert killed and is_transient(info.value)
    assert "rolled back" in str(info.value)
    kept = store.read("features", Key("gh"))
    assert len(kept) == 2 * 20 * 500 and (kept["value"] == 1.0).all()  # nothing half-written
    assert store.replace("features", big, Key("gh")) == len(big)  # the retry reconnects
    assert len(store.read("features", Key("gh"), columns=["era_id"])) == len(big)
    admin.close()
    store.close()


def test_a_lock_held_past_lock_timeout_fails_fast_is_logged_and_retryable(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eraflow")
    schema = f"l_{uuid.uuid4().hex[:6]}"
    store = PostgresStore(pg_dsn, schema=schema, lock_timeout=1.0)
    store.replace("features", features(1, 1.0), Key("gh"))
    holder = psycopg.connect(pg_dsn)
    holder.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, "features"))
    )
    began = time.monotonic()
    with pytest.raises(PostgresConnectionError, match="lock_timeout") as info:
        store.replace("features", features(1, 9.0), Key("gh"))
    waited = time.monotonic() - began
    assert 0.9 < waited < 15 and is_transient(info.value)
    assert "another session holds it" in caplog.text
    holder.rollback()
    holder.close()
    store.replace("features", features(1, 9.0), Key("gh"))  # free again: the retry works
    assert (store.read("features", Key("gh"))["value"] == 9.0).all()
    store.close()
