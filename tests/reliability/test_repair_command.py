"""``eraflow repair`` through the installed script: a truncated partition is moved aside and
named with the range to re-run; the re-run heals the store; a second repair finds nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

ERAFLOW = str(REPO / ".venv" / "bin" / "eraflow")
pytestmark = pytest.mark.slow


def eraflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ERAFLOW_"))}
    env |= {"PREFECT_HOME": str(home), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [ERAFLOW, *args], capture_output=True, text=True, env=env, check=False, timeout=600
    )


def test_repair_moves_a_truncated_partition_aside_and_a_rerun_heals(tmp_path: Path) -> None:
    store, home = tmp_path / "store", tmp_path / "home"
    run = ["run", "--store", str(store), "--simulator.days", "2", "--selection-levels", "A"]
    assert eraflow(home, *run).returncode == 0
    before = pd.read_parquet(store / "grid")
    month = next((store / "grid").rglob("*.parquet"))
    month.write_bytes(month.read_bytes()[: month.stat().st_size // 2])  # a torn copy

    done = eraflow(home, "repair", "--store", str(store))
    assert done.returncode == 1, done.stderr
    assert f"moved unreadable {month.relative_to(store)} to " in done.stdout
    assert "re-run 'sim_" in done.stdout
    assert not month.exists() and list((store / ".quarantine").rglob("*.parquet"))

    assert eraflow(home, *run).returncode == 0  # the re-run writes the range again
    after = pd.read_parquet(store / "grid")
    pd.testing.assert_frame_equal(
        after.sort_values(["entity", "sensor", "time"]).reset_index(drop=True),
        before.sort_values(["entity", "sensor", "time"]).reset_index(drop=True),
    )
    again = eraflow(home, "repair", "--store", str(store))
    assert again.returncode == 0 and "nothing to repair" in again.stdout
