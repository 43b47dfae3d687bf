"""Lost workers on a real Prefect server: the parent run ends (Failed), it never hangs.

Two faults: a pool with no live worker (its children wait for nobody), and a worker whose
process group is killed with kill -9 while its child run computes: the child's process, in a
session of its own, must stop with its worker (tasks.children.follow_worker). Both times the
pipeline must fail, naming the child and the cause, and mark the child Crashed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.prefect_server import PREFECT, flow_runs, prefect_server, run, start, stop

pytestmark = [pytest.mark.server, pytest.mark.slow]
LOST_AFTER = 15


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with prefect_server(tmp_path_factory.mktemp("lost-workers")) as env:
        run(["bash", "deployments/create_pools.sh"], env | {"PREFECT": PREFECT})
        run([PREFECT, "--no-prompt", "deploy", "--all"], env)
        yield env


def pipeline(store: Path, days: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "--store",
        str(store),
        "--simulator.days",
        str(days),
        "--simulator.full",
        "--empty-tsfresh-levels",
        "--selection-levels",
        "A",
        "--dispatch",
        "pools",
        "--gpu-pool",
        "--gpu-min-cost",
        "0",
        "--lost-worker-after",
        f"{LOST_AFTER}s",
    ]


def child_runs(env: dict[str, str]) -> list[Any]:
    return [child for flow, child in flow_runs(env["PREFECT_API_URL"]) if flow == "era-features"]


def test_a_pool_without_live_workers_fails_the_parent(
    deployed: dict[str, str], tmp_path: Path
) -> None:
    cpu = start(
        [PREFECT, "worker", "start", "--pool", "cpu-pool", "--type", "process"],
        deployed,
        tmp_path / "cpu.log",
    )
    try:
        began = time.monotonic()
        done = subprocess.run(
            pipeline(tmp_path / "store", 2),
            env=deployed,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        elapsed = time.monotonic() - began
    finally:
        stop(cpu)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no live worker in gpu-pool" in done.stdout + done.stderr
    assert elapsed < LOST_AFTER + 240  # detected, not hung (server round trips included)
    crashed = [r for r in child_runs(deployed) if r.work_pool_name == "gpu-pool"]
    assert crashed and all(r.state.type.value == "CRASHED" for r in crashed)


def test_a_worker_killed_mid_run_fails_the_parent(deployed: dict[str, str], tmp_path: Path) -> None:
    workers = {
        pool: start(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
            deployed,
            tmp_path / f"{pool}.log",
        )
        for pool in ("cpu-pool", "gpu-pool")
    }
    parent = subprocess.Popen(
        pipeline(tmp_path / "store", 40),
        env=deployed,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed_at = None
    child_gone: float | None = None
    try:
        deadline = time.monotonic() + 300
        while killed_at is None and time.monotonic() < deadline and parent.poll() is None:
            running = [
                r
                for r in child_runs(deployed)
                if r.work_pool_name == "gpu-pool"
                and r.state is not None
                and r.state.type.value == "RUNNING"
            ]
            if running:
                # The README's way: kill the worker's process group. The flow run runs in a
                # session of its own; it must stop with its worker (tasks.children).
                os.killpg(workers["gpu-pool"].pid, signal.SIGKILL)
                killed_at = time.monotonic()
                pid = (running[0].infrastructure_pid or "").rpartition(":")[2]
                child_gone = wait_gone(int(pid)) if pid.isdigit() else None
            time.sleep(0.3)
        out, _ = parent.communicate(timeout=400)
        detected = time.monotonic() - (killed_at or 0)
    finally:
        for worker in workers.values():
            stop(worker)
    assert killed_at is not None, "the gpu child never ran (nothing to kill)"
    assert child_gone is not None and child_gone < 10, "the flow run outlived its worker"
    assert parent.returncode == 1, out[-3000:]
    assert "era-features[gpu" in out and "no live worker in gpu-pool" in out, out[-3000:]
    print(
        f"the child's process ended {child_gone:.1f} s and the parent {detected:.1f} s after "
        "its worker was killed"
    )
    assert detected < 120


def wait_gone(pid: int, timeout: float = 30.0) -> float | None:
    """Seconds until process ``pid`` is gone (None: still there after ``timeout``)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped
                return time.monotonic() - began
        except psutil.NoSuchProcess:
            return time.monotonic() - began
        time.sleep(0.2)
    return None
