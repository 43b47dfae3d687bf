"""One error policy everywhere: every retried eraflow task retries only transient failures.

The classes (eraflow.common.retry): a lost or refused connection, a lock timeout, a worker lost
mid-run are retried; bad input, a child run that failed on its own, a bug are not. Each class
runs through a real Prefect task with the policy, on the session's Prefect test server.
"""

from __future__ import annotations

import importlib
import pkgutil
import socket
from collections.abc import Callable

import psycopg
import pytest
from prefect import Task, flow, task

import flows
import tasks
from eraflow.common.errors import ConfigError, DataError
from tasks._common import retry_transient
from tasks.children import ChildRunFailed, LostWorker
from tests.pg import fresh_database


def eraflow_tasks() -> list[Task[..., object]]:
    """Every Prefect task defined in tasks/ and flows/."""
    found = []
    for package in (tasks, flows):
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            found += [v for v in vars(module).values() if isinstance(v, Task)]
    return list({id(t): t for t in found}.values())


def test_every_retried_task_retries_only_transient_failures() -> None:
    retried = [t for t in eraflow_tasks() if t.retries]
    names = {t.name for t in retried}
    assert {"ingest", "eras", "selection", "backfill-chunk", "dispatch"} <= names
    wrong = [t.name for t in retried if t.retry_condition_fn is not retry_transient]
    assert not wrong, f"tasks that retry every failure: {wrong}"


def attempts_until_final(raise_it: Callable[[], None]) -> tuple[int, bool]:
    """Run a task with the policy (2 retries); how many tries it took and whether it failed."""
    tries = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
    def work() -> None:
        tries.append(1)
        raise_it()

    @flow
    def one() -> bool:
        return bool(work(return_state=True).is_failed())

    failed = one()
    return len(tries), failed


def raises(exc: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise exc

    return raise_it


def refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=3)


@pytest.mark.parametrize(
    ("raise_it", "expected_tries"),
    [
        pytest.param(refused, 3, id="refused connection (psycopg OperationalError)"),
        pytest.param(raises(ConnectionError("reset")), 3, id="lost conn"),
        pytest.param(
            raises(LostWorker("child: its process is gone")),
            3,
            id="lost worker",
        ),
        pytest.param(
            raises(ChildRunFailed("child ended Failed: bad data")),
            1,
            id="child failed on its own",
        ),
        pytest.param(raises(ConfigError("bad")), 1, id="bad input"),
        pytest.param(raises(DataError("empty")), 1, id="bad data"),
        pytest.param(raises(KeyError("bug")), 1, id="a bug"),
    ],
)
def test_only_transient_failures_are_retried(
    raise_it: Callable[[], None], expected_tries: int
) -> None:
    tries, failed = attempts_until_final(raise_it)
    assert failed
    assert tries == expected_tries


@pytest.mark.postgres
def test_a_lock_timeout_is_retried_until_the_lock_is_gone() -> None:
    """A real lock held by another session: the first try times out, the retry succeeds."""
    with fresh_database() as (dsn, _):
        holder = psycopg.connect(dsn, autocommit=True)
        holder.execute("CREATE TABLE t (x int)")
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        tries = []

        @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
        def write() -> None:
            tries.append(1)
            if len(tries) == 2:
                holder.execute("ROLLBACK")  # the other session lets go
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '300ms'")
                conn.execute("INSERT INTO t VALUES (1)")

        @flow
        def one() -> bool:
            return bool(write(return_state=True).is_completed())

        try:
            assert one()
        finally:
            holder.close()
        assert len(tries) == 2
