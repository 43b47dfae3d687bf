"""The one place a block name or a path becomes a store or a source connection.

Tasks and the command reach stores and sources through here, never through ``blocks/``
directly. Both kinds of block name are accepted the same way: ``name`` (the block type is
implied by the option) or ``block-type-slug/name``. Every check a run can make before its
first write is here too (:func:`check_resources`), so a missing block or an unreachable
database fails at once, naming the fix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eraflow.common.errors import ConfigError
from eraflow.config import POSTGRES, PipelineConfig, SourceOptions, StoreOptions
from eraflow.runs.bounds import GridPlan
from eraflow.runs.preflight import check_bounds, check_postgres_source, source_span
from eraflow.store import ParquetStore, ResultStore

if TYPE_CHECKING:
    import psycopg

STORE_TYPES = ("eraflow-parquet-store", "eraflow-postgres-store")
SOURCE_TYPE = "eraflow-postgres-connection"


def block_ref(option: str, value: str, kinds: tuple[str, ...]) -> tuple[str | None, str]:
    """``(type slug or None, name)`` of ``name`` or ``type/name``; the type one of ``kinds``."""
    slug, _, name = value.rpartition("/")
    if slug and slug not in kinds:
        raise ConfigError(
            f"{option} {value!r}: the block type must be {' or '.join(kinds)} (or give the "
            "name alone)"
        )
    return slug or None, name


def _resolve(option: str, value: str, kinds: tuple[str, ...], saved: dict[str, list[str]]) -> str:
    """The ``type/name`` the reference means, given the saved names per type."""
    slug, name = block_ref(option, value, kinds)
    holders = [k for k in ([slug] if slug else kinds) if name in saved.get(k, [])]
    if len(holders) > 1:
        raise ConfigError(
            f"{option} {value!r}: blocks of types {', '.join(holders)} share that name: give "
            f"'type/name', e.g. {holders[0]}/{name}"
        )
    if not holders:
        listed = "; ".join(f"{k}: {', '.join(saved.get(k, [])) or 'none'}" for k in kinds)
        raise ConfigError(
            f"{option} {value!r}: no saved block named {name!r} (saved {listed}): save it "
            "first (README 'PostgreSQL'), with the same PREFECT_HOME or PREFECT_API_URL as "
            "this command"
        )
    return f"{holders[0]}/{name}"


def _load(option: str, value: str, kinds: tuple[str, ...]) -> Any:
    """The saved block, or a ConfigError listing the saved blocks of its types."""
    from prefect.blocks.core import Block

    import blocks.parquet_store
    import blocks.postgres  # noqa: F401  (both register the block types Block.load resolves)

    saved = {k: _saved_names(k) for k in kinds}
    return Block.load(_resolve(option, value, kinds, saved))


def _saved_names(slug: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(slug, include_secrets=False)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 404:  # the type itself was never registered
                return []
            raise
    return sorted(d.name for d in documents if d.name and not d.is_anonymous)


@contextmanager
def store_session(options: StoreOptions) -> Iterator[ResultStore]:
    """The configured store (a block if named, else the Parquet folder), closed afterwards."""
    if options.block is not None:
        store: ResultStore = _load("store_block", options.block, STORE_TYPES).open()
    else:
        store = ParquetStore(options.path, lock_timeout=options.lock_timeout)
    with store:
        yield store


@contextmanager
def source_connection(source: SourceOptions) -> Iterator[psycopg.Connection]:
    """A connection to a PostgreSQL source (source 'postgres')."""
    block = _load("source_block", str(source.block), (SOURCE_TYPE,))
    with block.connect() as connection:
        yield connection


def check_resources(config: PipelineConfig) -> GridPlan | None:
    """What only a Prefect API or a database can tell, before anything is written.

    The store block exists and its store opens (a PostgreSQL store connects); the source
    block exists, its database answers, and its table holds the entities and the range
    within the grid's bounds (returned: the grid a PostgreSQL source's run will build).
    An unreachable database here is a mistake in the settings, so a ConfigError.
    """
    try:
        with store_session(config.store):
            pass
        if config.source.name != POSTGRES:
            return None
        with source_connection(config.source) as connection:
            return check_bounds(config, check_postgres_source(config, connection))
    except ConnectionError as exc:
        raise ConfigError(f"{exc}; the run wrote nothing") from None


def source_rows(config: PipelineConfig, entities: list[str] | None = None) -> int:
    """Source rows in the run's range of ``entities`` (default: the configured ones).

    Cheap (a cached scan of the files' time columns, or one PostgreSQL query): what a backfill
    asks per chunk to skip the chunks its source holds no data for.
    """
    chosen = entities if entities is not None else config.source.entities
    if config.source.name == POSTGRES:
        from eraflow.stages.ingest.postgres_source import PostgresSourceConfig
        from eraflow.stages.ingest.span import postgres_span

        with source_connection(config.source) as connection:
            span = postgres_span(
                PostgresSourceConfig.parse(config.source.postgres or {}),
                connection,
                start=config.source.start,
                end=config.source.end,
            )
    else:
        found = source_span(config)
        assert found is not None
        span = found
    return sum(p.rows for e, p in span.entities.items() if chosen is None or e in chosen)


def offline_block_names(home: Path, slug: str) -> list[str] | None:
    """Block names saved in the private server's database under ``home``, read directly.

    Why: ``eraflow run`` without ``PREFECT_API_URL`` starts a private server (about 6 s) only
    to learn that a named block does not exist. Prefect (pinned) keeps blocks in the SQLite
    file ``<home>/prefect.db``; read-only, it answers in milliseconds. ``None`` when the file
    is absent or its schema is not the expected one: then the server is asked instead.
    """
    database = home / "prefect.db"
    if not database.is_file():
        return []
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2)) as db:
            rows = db.execute(
                "SELECT d.name FROM block_document d JOIN block_type t "
                "ON d.block_type_id = t.id WHERE t.slug = ? AND d.is_anonymous = 0",
                (slug,),
            ).fetchall()
    except sqlite3.Error:
        return None
    return sorted(str(name) for (name,) in rows)


def check_blocks_offline(config: PipelineConfig, home: Path) -> None:
    """Fail fast on a named block the private server's database does not hold."""
    named: list[tuple[str, str | None, tuple[str, ...]]] = [
        ("store_block", config.store.block, STORE_TYPES)
    ]
    if config.source.name == POSTGRES:
        named.append(("source_block", config.source.block, (SOURCE_TYPE,)))
    for option, value, kinds in named:
        if value is None:
            continue
        saved = {k: offline_block_names(home, k) for k in kinds}
        if all(names is not None for names in saved.values()):
            _resolve(option, value, kinds, {k: v or [] for k, v in saved.items()})
