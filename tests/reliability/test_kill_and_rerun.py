"""kill -9 of a run at each stage, then a re-run: the tables equal an uninterrupted run's.

The run is the ``eraflow`` command in its own process, with its private Prefect server; it is
killed with SIGKILL while a stage is writing. Nothing may survive it (the server dies with
the command), and a plain re-run must end with exactly the tables of a run never killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.slow

ARGS = ["run", "--simulator.days", "4", "--empty-tsfresh-levels", "--selection-levels", "A", "C"]
TABLES = {
    "grid": ["entity", "sensor", "time"],
    "coverage": ["entity", "sensor", "day"],
    "eras": ["entity", "level", "era_id"],
    "features": ["entity", "level", "era_id", "sensor", "feature"],
    "selection": ["scope", "level", "feature"],
    "feature_matrix": ["scope", "entity", "level", "era_id"],
}


def command(store: Path, home: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO", "COLUMNS": "200"}
    return [sys.executable, "-m", "flows.cli", *ARGS, "--store", str(store)], env


def run_to_end(store: Path, home: Path) -> None:
    args, env = command(store, home)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def servers_of(home: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "server" in cmdline and environ.get("PREFECT_HOME") == str(home):
            found.append(process)
    return found


def table(store: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(store / name).drop(columns=["run_id", "written_at"], errors="ignore")
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame.sort_values(TABLES[name]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tables of a run that was never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    run_to_end(root / "store", root / "home")
    return root / "store"


@pytest.mark.parametrize(
    "marker",
    ["Task run 'gap-fill", "Task run 'eras[", "Task run 'features[", "Task run 'selection["],
)
def test_kill_9_during_a_stage_then_a_rerun_equals_an_uninterrupted_run(
    marker: str, reference: Path, tmp_path: Path
) -> None:
    store, home = tmp_path / "store", tmp_path / "home"
    args, env = command(store, home)
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line and " - Finished in state" not in line:
            process.kill()  # SIGKILL: no cleanup of any kind runs
            break
    process.wait(timeout=30)
    assert process.returncode == -9, "".join(seen[-20:])
    deadline = time.monotonic() + 15
    while servers_of(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not servers_of(home), "the private Prefect server outlived the killed run"

    run_to_end(store, home)
    for name in TABLES:
        left, right = table(store, name), table(reference, name)
        if name == "feature_matrix":
            for a, b in zip(left.pop("values"), right.pop("values"), strict=True):
                np.testing.assert_array_equal(a, b)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=name)
    assert not list(store.rglob("*.tmp"))  # a killed writer's leftovers were swept
