"""The retry classifier: one test per class of failure, PostgreSQL failures raised by the server.

Expected sides come from the policy in ``eraflow/common/retry.py``'s docstring, never from calling
``is_transient`` on some other input.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors

from eraflow.common.errors import ConfigError, DataError, EraflowError, IngestError, StoreError
from eraflow.common.pg import PostgresConnectionError, connect
from eraflow.common.retry import is_transient
from tests.pg import fresh_database


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


# ---- plain Python ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("reset"),
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_and_timeout_errors_are_transient(exc: BaseException) -> None:
    assert is_transient(exc) is True


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), KeyError("x"), TypeError("t"), ZeroDivisionError(), RuntimeError("r")],
    ids=lambda e: type(e).__name__,
)
def test_plain_bugs_are_not_transient(exc: BaseException) -> None:
    assert is_transient(exc) is False


# ---- eraflow's own errors -------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ConfigError, DataError, IngestError, StoreError, EraflowError])
def test_eraflow_errors_are_never_transient(cls: type[EraflowError]) -> None:
    assert is_transient(cls("the caller must fix this")) is False


@pytest.mark.parametrize("cls", [ConfigError, DataError, IngestError, StoreError])
@pytest.mark.parametrize("other", [ConnectionError, TimeoutError])
def test_an_eraflow_error_is_not_transient_even_when_also_a_connection_error(
    cls: type[EraflowError], other: type[Exception]
) -> None:
    """The EraflowError check comes first: an eraflow error that also subclasses a transient
    class (as ConfigError and DataError subclass ValueError) stays "fix it, don't retry"."""
    both = type(f"{cls.__name__}With{other.__name__}", (cls, other), {})
    assert issubclass(both, other)
    assert is_transient(both("x")) is False


def test_an_eraflow_error_raised_from_a_transient_one_is_not_transient() -> None:
    def fail() -> None:
        try:
            raise TimeoutError("the server did not answer")
        except TimeoutError as inner:
            raise StoreError("the stored table has the wrong columns") from inner

    with pytest.raises(StoreError) as info:
        fail()
    assert isinstance(info.value.__cause__, TimeoutError)
    assert is_transient(info.value.__cause__) is True
    assert is_transient(info.value) is False


def test_postgres_connection_error_is_transient() -> None:
    assert is_transient(PostgresConnectionError("cannot connect")) is True


# ---- real psycopg errors --------------------------------------------------------------------
def test_a_refused_connection_is_a_transient_operational_error() -> None:
    port = _closed_port()
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=x", connect_timeout=2)
    assert not isinstance(info.value, ConnectionError | TimeoutError)  # only the psycopg branch
    assert is_transient(info.value) is True
    # eraflow's own connect turns it into PostgresConnectionError: transient too
    with pytest.raises(PostgresConnectionError) as wrapped:
        connect(f"host=127.0.0.1 port={port} user=postgres dbname=x", connect_timeout=2)
    assert is_transient(wrapped.value) is True


@pytest.mark.postgres
def test_a_real_lock_timeout_is_transient(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE locked (x int)")
    holder = psycopg.connect(pg_dsn)  # not autocommit: the lock lasts until rollback
    waiter = psycopg.connect(pg_dsn, autocommit=True)
    try:
        holder.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        waiter.execute("SET lock_timeout = '100ms'")
        with pytest.raises(pg_errors.LockNotAvailable) as info:
            waiter.execute("SELECT * FROM locked")
    finally:
        holder.rollback()
        holder.close()
        waiter.close()
    assert info.value.sqlstate == "55P03"
    assert is_transient(info.value) is True


@pytest.mark.postgres
def test_a_real_serialization_failure_is_transient(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE ser (k int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO ser VALUES (1, 0)")
    a, b = psycopg.connect(pg_dsn), psycopg.connect(pg_dsn)
    try:
        for conn in (a, b):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT v FROM ser WHERE k = 1").fetchone()  # snapshot taken
        a.execute("UPDATE ser SET v = 1 WHERE k = 1")
        a.commit()
        with pytest.raises(pg_errors.SerializationFailure) as info:
            b.execute("UPDATE ser SET v = 2 WHERE k = 1")
    finally:
        a.close()
        b.close()
    assert info.value.sqlstate == "40001"
    assert is_transient(info.value) is True


@pytest.mark.postgres
def test_real_non_transient_server_errors_are_not_transient(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(pg_errors.UndefinedTable) as missing:
            conn.execute("SELECT * FROM no_such_table_here")
        conn.execute("CREATE TABLE uniq (k int PRIMARY KEY)")
        conn.execute("INSERT INTO uniq VALUES (1)")
        with pytest.raises(pg_errors.UniqueViolation) as dup:
            conn.execute("INSERT INTO uniq VALUES (1)")
        with pytest.raises(pg_errors.NumericValueOutOfRange) as big:
            conn.execute("SELECT 2147483647::int + 1")
    assert (missing.value.sqlstate, dup.value.sqlstate, big.value.sqlstate) == (
        "42P01",
        "23505",
        "22003",
    )
    for exc in (missing.value, dup.value, big.value):
        assert is_transient(exc) is False
