"""End to end on a real Prefect server: pools, `prefect deploy --all`, workers, a backfill
triggered with `prefect deployment run`, child runs on both pools, features exactly once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.prefect_server import PREFECT, prefect_server, run, start, stop

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real `prefect server` (SQLite) on a free port; stopped by PID afterwards."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as env:
        yield env


def test_backfill_runs_on_both_pools_and_writes_every_era_once(
    server: dict[str, str], tmp_path: Path
) -> None:
    env = server
    run(["bash", "deployments/create_pools.sh"], env | {"PREFECT": PREFECT})
    run([PREFECT, "--no-prompt", "deploy", "--all"], env)
    workers = [
        start(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
            env,
            tmp_path / f"{pool}.log",
        )
        for pool in ("cpu-pool", "gpu-pool")
    ]
    try:
        store = tmp_path / "store"
        # ~103 cost units per row: sub-day batches (cost < 30k) stay on CPU; the 3-day
        # level-A era (~89k) crosses gpu_min_cost and goes to gpu-pool.
        pipeline = {
            "store": str(store),
            "selection_levels": ["A"],
            "simulator": {"days": 6, "entities": ["e2e"], "seed": 3},
            "gpu_min_cost": 60000,
            "max_batch_cost": 30000,
        }
        out = run(
            [
                PREFECT,
                "deployment",
                "run",
                "backfill/manual",
                "--param",
                "start=2024-01-01",
                "--param",
                "end=2024-01-07",
                "--params",
                json.dumps({"chunk": "3D", "max_concurrent": 2, "parameters": pipeline}),
            ],
            env,
        )
        backfill_id = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert backfill_id, out
        runs = wait_for_all(env["PREFECT_API_URL"], backfill_id.group(1))
    finally:
        for worker in workers:
            stop(worker)

    assert all(r["state"] == "COMPLETED" for r in runs), runs
    flows = pd.DataFrame(runs)
    assert (flows["flow"] == "feature-pipeline").sum() == 2  # one per 3-day chunk
    pools = set(flows.loc[flows["flow"] == "era-features", "pool"])
    assert pools == {"gpu-pool", "cpu-pool"}

    eras = pd.read_parquet(store / "eras")
    features = pd.read_parquet(store / "features")
    era_keys = set(eras[["entity", "level", "era_id"]].itertuples(index=False, name=None))
    feature_keys = set(features[["entity", "level", "era_id"]].itertuples(index=False, name=None))
    assert feature_keys == era_keys
    assert not features.duplicated(["entity", "level", "era_id", "sensor", "feature"]).any()
    assert eras["start"].min() == pd.Timestamp("2024-01-01", tz="UTC")
    assert eras.groupby("level")["rows"].sum().eq(6 * 288).all()  # both chunks, each once


def wait_for_all(url: str, backfill_id: str, timeout: float = 900) -> list[dict[str, str]]:
    """Wait for the backfill run to end; then every flow run's flow, state and work pool."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        deadline = time.monotonic() + timeout
        while True:
            state = client.read_flow_run(backfill_id).state
            if state is not None and state.is_final():
                break
            assert time.monotonic() < deadline, f"backfill still {state} after {timeout} s"
            time.sleep(3)
        flows = {f.id: f.name for f in client.read_flows()}
        return [
            {
                "flow": flows[r.flow_id],
                "state": r.state.type.value if r.state else "",
                "pool": r.work_pool_name or "",
                "name": r.name,
            }
            for r in client.read_flow_runs(limit=200)
        ]
