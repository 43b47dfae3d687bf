"""A throwaway PostgreSQL database per test module (the real server, never a mock)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

ADMIN_DSN = os.environ.get("ERAFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """Create ``eraflow_test_<random>``, yield (its DSN, its name), drop it afterwards.

    An unreachable server fails the test with a clear message: CI always has PostgreSQL.
    """
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {ADMIN_DSN}: {exc}; start it or set ERAFLOW_TEST_PG",
            pytrace=False,
        )
    name = f"eraflow_test_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=name), name
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
