"""The private server of ``eraflow run``: the loops a private run needs, and no others."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from flows.cli.block_registration import MARKER, installed_registry, skip_env
from flows.cli.local_server import private_server


def test_the_private_server_keeps_the_run_history_loops_and_stops_the_others(
    tmp_path: Path,
) -> None:
    meanwhile: list[str] = []
    with (
        private_server(tmp_path, meanwhile=lambda: meanwhile.append("flow imported")) as url,
        urllib.request.urlopen(f"{url}/admin/settings", timeout=10) as response,
    ):
        services = json.load(response)["server"]["services"]
    enabled = {name: bool(options.get("enabled")) for name, options in services.items()}
    assert meanwhile == ["flow imported"]  # called once, while the server started
    assert enabled["event_persister"] and enabled["task_run_recorder"]  # the UI's history
    stopped = ["scheduler", "late_runs", "foreman", "triggers", "repossessor", "db_vacuum"]
    assert not any(enabled[name] for name in stopped)


def _server_view(url: str) -> tuple[bool, int]:
    """Whether the server registered blocks at its start, and how many block types it has."""
    with urllib.request.urlopen(f"{url}/admin/settings", timeout=10) as response:
        registers = bool(json.load(response)["server"]["register_blocks_on_start"])
    request = urllib.request.Request(
        f"{url}/block_types/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return registers, len(json.load(response))


def test_a_home_registers_its_block_types_once_and_again_when_the_install_changes(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with private_server(home) as url:
        first = _server_view(url)
    marker = json.loads((home / MARKER).read_text())
    with private_server(home) as url:
        second = _server_view(url)
    marker["installed"]["prefect"] = "0.0.1"  # as if Prefect had been upgraded since
    (home / MARKER).write_text(json.dumps(marker))
    with private_server(home) as url:
        third = _server_view(url)

    assert first[0] and first[1] >= 10  # Prefect's own block types (Secret, JSON, ...)
    assert marker["block_types"] == first[1]
    assert second == (False, first[1])  # skipped, and every block type is still there
    assert third == (True, first[1])  # registered again
    assert json.loads((home / MARKER).read_text())["installed"] == installed_registry()


def test_registration_is_not_skipped_without_the_database_it_was_recorded_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "prefect.db") as database:
        database.execute("CREATE TABLE block_type (id TEXT)")
        database.executemany("INSERT INTO block_type VALUES (?)", [("a",), ("b",)])
    marker = {"installed": installed_registry(), "block_types": 2}
    (home / MARKER).write_text(json.dumps(marker))
    recorded = skip_env(home)
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://x/y")
    elsewhere = skip_env(home)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    with sqlite3.connect(home / "prefect.db") as database:
        database.execute("DELETE FROM block_type")  # as ``prefect server database reset`` leaves it
    reset = skip_env(home)
    (home / "prefect.db").unlink()

    assert recorded == {
        "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    }
    assert elsewhere == {}  # another database: Prefect's own check decides
    assert reset == {}
    assert skip_env(home) == {}  # no database at all
