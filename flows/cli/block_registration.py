"""Skip the private server's block registration in a home where it is known to be done.

Each start of a Prefect server checks its block types: it imports every installed Prefect
collection (prefect-dask brings in distributed and NumPy), hashes the block registry and
compares it with ``memo_store.toml``. That check took 1.2-1.4 s of the 4.4-5.9 s of CPU a
private server's start cost on a slow day of the 2-core machine, 0.55 s of 3.6-4.2 s on a
faster one (4 A/B pairs), on every ``eraflow run``, although the registry only changes when
Prefect or a collection is installed or upgraded.

So the first start in a home registers as Prefect does, and eraflow then records what was
installed (the versions of Prefect and of every distribution with a ``prefect.collections``
entry point) and how many block types the home's database holds. A later start skips the
check only when the same versions are installed and the database still holds at least those
block types (a deleted or reset database registers again). A home whose server database is
not its own SQLite file (a connection URL in the environment or in its profiles) always
registers. eraflow's own blocks do not depend on this: a block registers its type on save.
A collection installed in editable mode and changed without a new version is not seen:
delete ``<home>/eraflow-blocks-registered.json`` and the next start registers again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from importlib import metadata
from pathlib import Path

MARKER = "eraflow-blocks-registered.json"
#: What a server reads to skip the check and the registration (both Prefect settings).
SKIP_ENV = {
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
}
DATABASE_URL_VARIABLES = (
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
)


def installed_registry() -> dict[str, str]:
    """The versions that decide the block registry: Prefect's and its collections'."""
    versions = {"prefect": metadata.version("prefect"), "python": sys.executable}
    for entry in metadata.entry_points(group="prefect.collections"):
        if entry.dist is not None:
            versions[entry.dist.name] = entry.dist.version
    return versions


def _home_database(home: Path) -> Path | None:
    """The home's own SQLite database, or None when the server may use another one."""
    if any(os.environ.get(name) for name in DATABASE_URL_VARIABLES):
        return None
    profiles = home / "profiles.toml"
    if profiles.is_file() and "DATABASE" in profiles.read_text(errors="replace").upper():
        return None
    return home / "prefect.db"


def _block_types(database: Path) -> int:
    """How many block types ``database`` holds (0 when it cannot be read)."""
    if not database.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM block_type").fetchone()[0])
    except sqlite3.Error:
        return 0


def skip_env(home: Path) -> dict[str, str]:
    """The settings that skip registration in ``home``, or none when it must run."""
    database = _home_database(home)
    try:
        recorded = json.loads((home / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    if database is None or recorded.get("installed") != installed_registry():
        return {}
    if _block_types(database) < int(recorded.get("block_types", 1 << 30)):
        return {}
    return dict(SKIP_ENV)


def record_registration(home: Path) -> None:
    """After a start that registered: remember what was installed and what the database holds."""
    database = _home_database(home)
    block_types = _block_types(database) if database is not None else 0
    if block_types == 0:
        return
    marker = {"installed": installed_registry(), "block_types": block_types}
    temporary = home / f".{MARKER}.{os.getpid()}"
    temporary.write_text(json.dumps(marker, indent=1, sort_keys=True))
    temporary.replace(home / MARKER)
