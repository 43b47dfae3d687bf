"""Store locks end: a held lock fails a write within lock_timeout, naming the file and holder.

The holder is a real other process (a child that takes the locks and sleeps), never a mock.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from eraflow.common.retry import is_transient
from eraflow.store import Key, LockTimeoutError, ParquetStore, Range, ResultStore
from eraflow.store.locks import file_lock, read_holder
from tests.pg import fresh_database

T0 = pd.Timestamp("2024-01-30", tz="UTC")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with fresh_database() as (dsn, _):
        yield dsn


def grid(entity: str, hours: int, value: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity": entity,
            "sensor": "x",
            "time": pd.date_range(T0, periods=hours, freq="1h"),
            "value": value + np.arange(hours, dtype=float),
            "filled": False,
        }
    )


def selection(scope: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scope": scope,
            "level": "C",
            "feature": ["x__mean"],
            "kept": True,
            "reason": "kept",
            "position": 0,
            "run_id": "r",
        }
    )


def matrix(scope: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scope": scope,
            "entity": "a",
            "level": "C",
            "era_id": [1],
            "start": [T0],
            "end": [T0 + pd.Timedelta("1D")],
            "values": [np.array([1.0])],
        }
    )


def used_store(root: Path) -> ParquetStore:
    """A store every kind of write has used: grid, linked tables, an owner's lock."""
    store = ParquetStore(root, lock_timeout=1.0)
    store.replace("grid", grid("a", 5, 0.0), Key("a", {"time": Range(T0, T0 + pd.Timedelta("5h"))}))
    key = Key("a", {"level": "C"})
    store.replace_many([("selection", selection("a"), key), ("feature_matrix", matrix("a"), key)])
    with store.lock("a"):
        pass
    return store


class Holder:
    """A child process holding the given lock files (flock) until stopped."""

    def __init__(self, files: list[Path], *, record: bool) -> None:
        code = textwrap.dedent(
            """
            import fcntl, os, sys, time, contextlib
            from pathlib import Path
            from eraflow.store.locks import file_lock
            files, record = [Path(p) for p in sys.argv[2:]], sys.argv[1] == "1"
            with contextlib.ExitStack() as stack:
                for path in files:
                    if record:
                        stack.enter_context(file_lock(path, timeout=5))
                    else:
                        fd = os.open(path, os.O_RDWR | os.O_CREAT)
                        fcntl.flock(fd, fcntl.LOCK_EX)
                print("held", flush=True)
                time.sleep(600)
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "1" if record else "0", *map(str, files)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def lock_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.lock") if p.is_file())


def test_a_held_lock_ends_a_write_within_lock_timeout_naming_the_file_and_holder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = used_store(tmp_path)
    folder_lock = tmp_path / "grid" / "a" / ".lock"
    holder = Holder([folder_lock], record=True)
    try:
        began = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            store.replace(
                "grid", grid("a", 2, 9.0), Key("a", {"time": Range(T0, T0 + pd.Timedelta("2h"))})
            )
        waited = time.monotonic() - began
    finally:
        holder.stop()
    message = str(info.value)
    assert 1.0 <= waited < 2.0, waited
    assert str(folder_lock) in message and f"held by pid {holder.pid} on host" in message
    assert "since" in message and "stop that process or wait; lock_timeout 1 s" in message
    assert is_transient(info.value)
    assert f"pid {holder.pid}" in caplog.text  # logged once while waiting
    # the holder is gone: the next write goes through and the data is the new one
    store.replace("grid", grid("a", 2, 9.0), Key("a", {"time": Range(T0, T0 + pd.Timedelta("2h"))}))
    assert store.read("grid", Key("a"))["value"].tolist() == [9.0, 10.0, 2.0, 3.0, 4.0]


def test_with_every_lock_file_held_each_kind_of_write_ends_within_the_timeout(
    tmp_path: Path,
) -> None:
    store = used_store(tmp_path)
    files = lock_files(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in files} >= {
        "grid/a/.lock",
        ".scoped/.lock",
        ".locks/a.lock",
    }
    holder = Holder(files, record=False)  # a plain flock: no holder record
    key = Key("a", {"level": "C"})
    writes = {
        "grid": lambda: store.replace(
            "grid", grid("a", 2, 1.0), Key("a", {"time": Range(T0, T0 + pd.Timedelta("2h"))})
        ),
        "selection and matrix": lambda: store.replace_many(
            [("selection", selection("a"), key), ("feature_matrix", matrix("a"), key)]
        ),
        "owner lock": lambda: store.lock("a").__enter__(),
    }
    try:
        for what, write in writes.items():
            began = time.monotonic()
            with pytest.raises(LockTimeoutError) as info:
                write()
            assert time.monotonic() - began < 2.0, what
            assert info.value.lock in {str(p) for p in files}
            # no record, but /proc/locks names the process holding the flock
            assert f"held by pid {holder.pid} on host" in str(info.value), str(info.value)
    finally:
        holder.stop()


def test_a_stale_holder_record_is_recognised_and_overwritten(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    record = {
        "pid": dead_pid,
        "host": socket.gethostname(),
        "command": "old writer",
        "since": "2026-01-01 00:00:00 UTC",
    }
    lock.write_text(json.dumps(record))
    holder = Holder([lock], record=False)  # holds without writing a record of its own
    try:
        with pytest.raises(LockTimeoutError) as info, file_lock(lock, timeout=0.3):
            pass
    finally:
        holder.stop()
    message = str(info.value)
    assert f"held by pid {holder.pid}" in message
    assert f"pid {dead_pid}" in message and "is stale (that process is gone)" in message
    with file_lock(lock, timeout=1):  # nobody holds it now: granted, the record is ours
        mine = read_holder(lock)
        assert mine is not None and mine.pid == os.getpid() and not mine.is_gone()
    assert read_holder(lock) is None  # cleared on release


@pytest.fixture(params=["parquet", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStore]:
    if request.param == "parquet":
        yield ParquetStore(tmp_path / "store", lock_timeout=2.0)
        return
    from eraflow.store.postgres import PostgresStore

    dsn = request.getfixturevalue("pg_dsn")
    with PostgresStore(dsn, schema=f"k_{uuid.uuid4().hex[:8]}", lock_timeout=2.0) as opened:
        yield opened


def test_the_owner_lock_is_reentrant_in_a_thread_and_exclusive_between_threads(
    store: ResultStore,
) -> None:
    entered = threading.Event()
    order: list[str] = []

    def other() -> None:
        with store.lock("a"):
            order.append("other")

    with store.lock("a"), store.lock("a"):  # nested: no wait on itself
        store.replace(
            "grid", grid("a", 2, 0.0), Key("a", {"time": Range(T0, T0 + pd.Timedelta("2h"))})
        )
        thread = threading.Thread(target=lambda: (entered.set(), other()))
        thread.start()
        entered.wait()
        time.sleep(0.2)
        order.append("main")
    thread.join()
    assert order == ["main", "other"]


@pytest.mark.postgres
def test_a_postgres_owner_lock_held_elsewhere_ends_within_lock_timeout(pg_dsn: str) -> None:
    from eraflow.store.postgres import PostgresStore

    schema = f"k_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(pg_dsn, schema=schema, lock_timeout=0.5)
    other = psycopg.connect(pg_dsn, autocommit=True, application_name="stuck-writer")
    other.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"eraflow:{schema}:a"])
    pid = other.info.backend_pid
    try:
        began = time.monotonic()
        with pytest.raises(LockTimeoutError) as info, store.lock("a"):
            pass
        assert time.monotonic() - began < 3.0
    finally:
        other.close()
    message = str(info.value)
    assert f"backend pid {pid} (application stuck-writer" in message
    assert "lock_timeout 0.5 s" in message and is_transient(info.value)
    with store.lock("a"):  # released with its session
        pass
    store.close()
