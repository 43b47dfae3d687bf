"""Prefect servers started by eraflow: a private one per command run, and ``eraflow server``.

A private server replaces Prefect's ephemeral one for ``eraflow run``: it is a child process
that the kernel stops when the command dies (``PR_SET_PDEATHSIG``), so even ``kill -9`` of a
run leaves no server behind (Prefect's ephemeral server outlives a killed parent).

``eraflow server up`` starts a long-lived server, the work pools, the deployments and one
worker per pool, each in its own session with a pid file under ``<home>/eraflow-server``;
``down`` stops them and every process they started (flow runs included).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

PREFECT = str(Path(sys.executable).parent / "prefect")
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
POOLS = ("cpu-pool", "gpu-pool")


def free_port() -> int:
    """A TCP port nothing listens on now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Wait for ``<url>/health``; fail with the log's tail if the server died or hung."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"the Prefect server at {url} did not start:\n{tail}")
        time.sleep(0.5)


def server_env(home: Path, url: str) -> dict[str, str]:
    """The environment a server, worker or client of ``url`` runs with."""
    return os.environ | QUIET | {"PREFECT_HOME": str(home.resolve()), "PREFECT_API_URL": url}


@contextmanager
def private_server(home: Path, timeout: float = 120.0) -> Iterator[str]:
    """A Prefect server for this process only; yields its API URL, stops it afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home / "private-server.log"
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        env=server_env(home, url),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    try:
        wait_healthy(url, process, timeout, log)
        yield url
    finally:
        stop_tree(process.pid, grace=10.0)


def stop_tree(pid: int, grace: float) -> list[int]:
    """SIGTERM ``pid`` and everything it started, SIGKILL what is left after ``grace`` s."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in processes]


def _state_dir(home: Path) -> Path:
    folder = home / "eraflow-server"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _start(name: str, args: list[str], env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    folder = _state_dir(home)
    process = subprocess.Popen(
        args,
        env=env,
        stdout=(folder / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (folder / f"{name}.pid").write_text(str(process.pid))
    return process


def server_up(home: Path, port: int, *, workers: bool, deploy: bool, project: Path) -> str:
    """Start server, pools, deployments and workers; returns the API URL to export."""
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(home, url) | {
        "ERAFLOW_HOME": str(project.resolve()),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    if _alive(home, "server"):
        raise RuntimeError(f"a server from {home} is already running: eraflow server down first")
    server = _start(
        "server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        env,
        home,
    )
    wait_healthy(url, server, 180.0, _state_dir(home) / "server.log")
    if deploy:
        subprocess.run(
            ["bash", str(project / "deployments" / "create_pools.sh")],
            env=env | {"PREFECT": PREFECT},
            cwd=project,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--all"],
            env=env,
            cwd=project,
            check=True,
            capture_output=True,
        )
    if workers:
        for pool in POOLS:
            _start(
                pool, [PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env, home
            )
    return url


def _alive(home: Path, name: str) -> bool:
    pid_file = home / "eraflow-server" / f"{name}.pid"
    return pid_file.is_file() and psutil.pid_exists(int(pid_file.read_text()))


def server_down(home: Path) -> list[str]:
    """Stop every process ``server up`` started (workers first), and what they started."""
    folder = home / "eraflow-server"
    stopped = []
    for name in (*POOLS, "server"):
        pid_file = folder / f"{name}.pid"
        if pid_file.is_file():
            if stop_tree(int(pid_file.read_text()), grace=5.0):
                stopped.append(name)
            pid_file.unlink()
    return stopped


def server_status(home: Path) -> dict[str, bool]:
    """Which of the server and the workers are running."""
    return {name: _alive(home, name) for name in ("server", *POOLS)}
