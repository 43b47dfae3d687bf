"""The flow on a real ``dask.distributed`` cluster gives the tables of the default runner.

A scheduler and two single-threaded workers run as separate OS processes (the venv's Python,
the repository root as working directory and on PYTHONPATH, the Prefect API and home of this
test session in their environment). The same simulator run goes once through the default
thread runner and once through ``task_runner="dask"`` with the scheduler's address; every
stored table must be identical, and the workers must have executed the era-feature tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from eraflow.config import SimulatorSettings
from eraflow.store import TABLES
from tests.flows.test_scoped_runs import run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
PARAMS: dict[str, Any] = {
    "selection_levels": ["A"],
    "tsfresh_levels": [],
    "simulator": SimulatorSettings(days=2, entities=["cluster_a", "cluster_b"], seed=11),
}
DIFFERING = ["run_id", "written_at"]  # which run wrote a row, and when


def stored(store: Path, name: str) -> pd.DataFrame:
    """Table ``name`` sorted by its key, without the columns that differ between runs."""
    frame = pd.read_parquet(store / name)
    frame = frame.drop(columns=[c for c in DIFFERING if c in frame.columns])
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, then SIGKILL what is still alive after 15 s."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches its children
        )


@pytest.fixture
def cluster(tmp_path: Path, prefect_api: None) -> Iterator[str]:
    """A scheduler and two worker processes; yields the scheduler's address."""
    from distributed import Client
    from prefect.settings import PREFECT_API_URL

    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # The harness sets the API in this process's settings only; the settings context travels
    # with each task, but workers get it in their environment too (logs, client defaults).
    if PREFECT_API_URL.value():
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    scheduler_file = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            _start(
                [
                    "distributed.cli.dask_scheduler",
                    "--host=127.0.0.1",
                    "--port=0",  # a free port, reported in the scheduler file
                    "--no-dashboard",
                    f"--scheduler-file={scheduler_file}",
                    "--idle-timeout=600s",  # gone even if this test process is killed
                ],
                logs / "scheduler.log",
                env,
            )
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert procs[0].poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "no scheduler file after 60 s"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            procs.append(
                _start(
                    [
                        "distributed.cli.dask_worker",
                        address,
                        "--nworkers=1",
                        "--nthreads=1",
                        "--memory-limit=3GiB",
                        "--no-nanny",
                        "--no-dashboard",
                        "--host=127.0.0.1",
                        f"--name=w{i}",
                        f"--local-directory={tmp_path / f'w{i}'}",
                        "--death-timeout=60s",
                    ],
                    logs / f"worker{i}.log",
                    env,
                )
            )
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        # Workers first: a worker whose scheduler vanished under it hangs on exit.
        _stop(procs[1:])
        _stop(procs[:1])


def test_a_real_cluster_gives_the_tables_of_the_thread_runner(tmp_path: Path, cluster: str) -> None:
    from distributed import Client

    threads, dask = tmp_path / "threads", tmp_path / "dask"
    run(threads, **PARAMS)
    summary = run(dask, task_runner="dask", dask_address=cluster, **PARAMS)
    assert summary.computed, "no era batches were due: the cluster had nothing to do"

    names = sorted(TABLES.keys() & {p.name for p in threads.iterdir()})
    assert set(names) >= {"grid", "coverage", "eras", "features", "feature_ledger"}, names
    assert {"selection", "feature_matrix"} <= set(names), names
    assert names == sorted(TABLES.keys() & {p.name for p in dask.iterdir()})
    for name in names:
        left, right = (stored(store, name) for store in (threads, dask))
        if name == "feature_matrix":
            for x, y in zip(left.pop("values"), right.pop("values"), strict=True):
                np.testing.assert_array_equal(x, y)
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)

    # The era-feature tasks ran in the worker processes, not in threads of this one.
    def executed(dask_worker: Any) -> dict[str, Any]:
        keys = {str(entry[0]) for entry in dask_worker.state.log}
        return {
            "pid": os.getpid(),
            "count": dask_worker.state.executed_count,
            "era_features": sorted(k for k in keys if k.startswith("era_features-")),
        }

    with Client(cluster, timeout=30) as client:
        per_worker = client.run(executed)
    assert len(per_worker) == 2
    assert all(w["pid"] != os.getpid() for w in per_worker.values())
    ran = {k for w in per_worker.values() for k in w["era_features"]}
    # Every engine batch was one era_features task on a worker (none with threads here).
    assert len(ran) == sum(c.batches for c in summary.computed) > 0, per_worker
