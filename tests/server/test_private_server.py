"""The private server of ``eraflow run``: the loops a private run needs, and no others."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

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
