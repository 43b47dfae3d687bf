"""Servers and workers a user starts with the ``eraflow`` command: shared homes, dead workers.

Two commands started at once on a fresh ``PREFECT_HOME`` both finish (once, one died setting
up Prefect's database); ``eraflow server up`` on a running server brings back a worker that
died, and ``eraflow server restart --pool`` replaces a live one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.prefect_server import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]
ERAFLOW = str(REPO / ".venv" / "bin" / "eraflow")


def env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAFLOW_"))}
    return clean | {"PREFECT_HOME": str(home), "MPLBACKEND": "Agg"}


def test_two_first_runs_at_once_share_a_fresh_prefect_home(tmp_path: Path) -> None:
    home = tmp_path / "home"  # fresh: no database yet
    runs = [
        subprocess.Popen(
            [
                ERAFLOW,
                "run",
                "--simulator.days",
                "2",
                "--selection-levels",
                "A",
                "--store",
                str(tmp_path / f"store-{n}"),
            ],
            env=env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
        assert "flow run Completed" in out
    assert not list(home.glob("private-server-*.log"))  # both servers stopped cleanly


def pid_of(home: Path, name: str) -> int:
    return int((home / "eraflow-server" / f"{name}.pid").read_text())


def eraflow(home: Path, *args: str) -> str:
    done = subprocess.run(
        [ERAFLOW, "server", *args, "--home", str(home)],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_server_up_brings_back_a_dead_worker_and_restart_replaces_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = str(free_port())
    try:
        eraflow(home, "up", "--port", port)
        dead = pid_of(home, "cpu-pool")
        os.killpg(dead, signal.SIGKILL)  # the worker dies; the server runs on
        deadline = time.monotonic() + 10
        while psutil.pid_exists(dead) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "cpu-pool: stopped" in eraflow(home, "status")
        again = eraflow(home, "up", "--port", port)
        assert "already runs; started again: cpu-pool" in again
        assert f"127.0.0.1:{port}" in again
        status = eraflow(home, "status")
        assert "cpu-pool: running" in status and "gpu-pool: running" in status
        before = pid_of(home, "gpu-pool")
        assert "gpu-pool: worker restarted" in eraflow(home, "restart", "--pool", "gpu-pool")
        time.sleep(1)
        assert pid_of(home, "gpu-pool") != before and not psutil.pid_exists(before)
    finally:
        eraflow(home, "down")
    assert "stopped" in eraflow(home, "status")
