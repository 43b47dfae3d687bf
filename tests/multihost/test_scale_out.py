"""Scale-out across hosts: a backfill through the deployments, a GPU host cut off mid-run.

Three hosts on this machine (tests/multihost/hosts.py): the server host (this process) runs
the Prefect server and holds the PostgreSQL store; ``gpu-host`` runs the gpu-pool worker;
``cpu-host`` the cpu-pool worker. ``eraflow backfill --chunk-deployment`` on the server host
sends each chunk to cpu-pool and its era batches to gpu-pool. While a gpu-pool child runs on
gpu-host, gpu-host's cable goes down; a standby gpu-pool worker starts on cpu-host. The
chunk's watchdog must see the child's heartbeats stop, mark it Crashed, and run its batches
again, now on cpu-host; the backfill must complete with the tables of the same backfill run
in one process into Parquet.

Run with ``make multihost`` (root, iproute2): not part of ``make test``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from eraflow.runs.scope import read_feature_matrix
from eraflow.store import TABLES, ParquetStore, PostgresStore, ResultStore
from tests.multihost.hosts import SERVER_IP, Host, hosts, why_not
from tests.pg import fresh_database
from tests.prefect_server import PREFECT, flow_runs, prefect_server, run, start, stop

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.server,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]

ERAFLOW = str(Path(sys.executable).parent / "eraflow")
LOST_AFTER = 45  # the watchdog's floor; heartbeats every 30 s (prefect.yaml) make it 90 s
RANGE = ["--start", "2024-01-01", "--end", "2024-01-15", "--chunk", "7D"]
WORK = [
    "--simulator.days",
    "14",
    "--simulator.full",
    "--empty-tsfresh-levels",
    "--selection-levels",
    "A",
]
COMPARED = ["grid", "coverage", "eras", "features", "feature_ledger", "selection"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The hosts, the server and the store: the environment of the server host's clients."""
    if why := why_not():
        pytest.skip(f"scale-out test: {why}")
    home = tmp_path_factory.mktemp("multihost")
    with (
        hosts(["gpu-host", "cpu-host"]) as machines,
        fresh_database() as (dsn, database),
        prefect_server(home, host=SERVER_IP) as env,
    ):
        # PostgreSQL listens on 127.0.0.1 only: offer it on the server host's address.
        forward = start(
            [
                sys.executable,
                "-m",
                "tests.multihost.forward",
                SERVER_IP,
                "5432",
                "127.0.0.1",
                "5432",
            ],
            env,
            home / "forward.log",
        )
        try:
            wait_for_port(SERVER_IP, 5432)
            run(["bash", "deployments/create_pools.sh"], env | {"PREFECT": PREFECT})
            run([PREFECT, "--no-prompt", "deploy", "--all"], env)
            save_store_block(env["PREFECT_API_URL"], database)
            yield {"env": env, "hosts": machines, "dsn": dsn, "home": home}
        finally:
            stop(forward)


def wait_for_port(host: str, port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {host}:{port}"
            time.sleep(0.2)


def save_store_block(url: str, database: str) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.postgres import PostgresConnection, PostgresStoreBlock

    with temporary_settings({PREFECT_API_URL: url}):
        connection = PostgresConnection(host=SERVER_IP, port=5432, database=database)
        PostgresStoreBlock(connection=connection, db_schema="results").save(
            "multihost", overwrite=True
        )


def worker(host: Host, pool: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = [PREFECT, "worker", "start", "--pool", pool, "--type", "process"]
    return start(host.command([*args, "--name", f"{pool}@{host.name}"]), env, log)


def runs_seen(url: str) -> list[dict[str, Any]]:
    """Every flow run: id, flow, name, state, its message, pool and worker."""
    return [
        {
            "id": str(r.id),
            "flow": flow,
            "name": r.name,
            "state": r.state.type.value if r.state else "",
            "message": (r.state.message or "") if r.state else "",
            "pool": r.work_pool_name or "",
            "worker": (r.labels or {}).get("prefect.worker.name", ""),
            "created": r.created,
        }
        for flow, r in flow_runs(url)
    ]


def heartbeats(url: str, run_id: str) -> int:
    """How many heartbeats of flow run ``run_id`` the server holds (at most 2 counted)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        found = client.read_events(
            EventFilter(
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            ),
            limit=2,
        )
        return len(found.events)


def stored(store: ResultStore, name: str) -> pd.DataFrame:
    """Table ``name`` sorted by its key, without the columns saying which run wrote a row."""
    frame = store.read(name).drop(columns=["run_id", "written_at"], errors="ignore")
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    key = [c for c in TABLES[name].key if c in frame.columns]
    return frame.sort_values(key).reset_index(drop=True)


def test_a_gpu_host_cut_off_mid_run_is_detected_and_its_work_runs_on_another_host(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    env, machines = cluster["env"], cluster["hosts"]
    url = env["PREFECT_API_URL"]
    logs = cluster["home"]
    workers = [
        worker(machines["gpu-host"], "gpu-pool", env, logs / "gpu-host-gpu.log"),
        worker(machines["cpu-host"], "cpu-pool", env, logs / "cpu-host-cpu.log"),
    ]
    backfill = subprocess.Popen(
        [
            ERAFLOW,
            "backfill",
            *RANGE,
            *WORK,
            "--chunk-deployment",
            "feature-pipeline/manual",
            "--store-block",
            "eraflow-postgres-store/multihost",
            "--store",
            str(tmp_path / "reports"),
            "--dispatch",
            "pools",
            "--gpu-pool",
            "--gpu-min-cost",
            "0",
            "--lost-worker-after",
            f"{LOST_AFTER}s",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lost: dict[str, Any] | None = None
    try:
        deadline = time.monotonic() + 600
        while lost is None and backfill.poll() is None:
            assert time.monotonic() < deadline, "no gpu-pool child ran on gpu-host in 600 s"
            running = [
                r
                for r in runs_seen(url)
                if r["pool"] == "gpu-pool"
                and r["worker"] == "gpu-pool@gpu-host"
                and r["state"] == "RUNNING"
                and heartbeats(url, r["id"]) > 0
            ]
            if running:
                lost = running[0]
                machines["gpu-host"].cut_off()
                cut_at = time.monotonic()
                standby = machines["cpu-host"]
                workers.append(worker(standby, "gpu-pool", env, logs / "cpu-host-gpu.log"))
            time.sleep(0.5)
        out, _ = backfill.communicate(timeout=1200)
        took = time.monotonic() - cut_at if lost else 0.0
    finally:
        if backfill.poll() is None:
            backfill.kill()
        for process in workers:
            stop(process)
    assert lost is not None, "the gpu-pool child ended before gpu-host could be cut off"
    assert backfill.returncode == 0, out[-4000:]
    print(f"the backfill ended {took:.0f} s after gpu-host was cut off")

    runs = pd.DataFrame(runs_seen(url))
    crashed = runs.loc[runs["id"] == lost["id"]].iloc[0]
    assert crashed["state"] == "CRASHED", crashed.to_dict()
    assert "no heartbeat" in crashed["message"], crashed["message"]
    assert "worker gpu-pool@gpu-host" in crashed["message"], crashed["message"]
    again = runs[
        (runs["name"] == lost["name"])
        & (runs["created"] > lost["created"])
        & (runs["state"] == "COMPLETED")
    ]
    assert list(again["worker"]) == ["gpu-pool@cpu-host"], runs[["name", "state", "worker"]]
    assert (runs.loc[runs["flow"] != "era-features", "state"] == "COMPLETED").all()

    # The same backfill in one process into Parquet: the same tables.
    reference = tmp_path / "reference"
    done = subprocess.run(
        [ERAFLOW, "backfill", *RANGE, *WORK, "--store", str(reference)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with PostgresStore(cluster["dsn"], schema="results") as deployed:
        for name in COMPARED:
            left, right = stored(deployed, name), stored(ParquetStore(reference), name)
            assert len(left) > 0, f"{name}: nothing stored in PostgreSQL"
            pd.testing.assert_frame_equal(left, right, check_dtype=False, obj=name)
        matrix = read_feature_matrix(deployed, "sim_a+sim_b", "A")
        assert matrix.shape[1] > 0
        pd.testing.assert_frame_equal(
            matrix, read_feature_matrix(ParquetStore(reference), "sim_a+sim_b", "A")
        )
