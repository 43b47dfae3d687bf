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
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from eraflow.common.errors import ConfigError
from flows.cli.block_registration import record_registration, skip_env

PREFECT = str(Path(sys.executable).parent / "prefect")
QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
POOLS = ("cpu-pool", "gpu-pool")
#: Server loops a private server has no use for: it has no deployments, schedules, workers,
#: automations or paused runs, and dies with its command. Idle, they took 0.63 s of CPU per
#: 30 s; without them 0.36 s. The events and task-run recorders stay (the runs' history).
PRIVATE_SERVICES_OFF = {
    f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
    for name in (
        "CANCELLATION_CLEANUP",
        "CLEANUP_RECONCILER",
        "FOREMAN",
        "LATE_RUNS",
        "PAUSE_EXPIRATIONS",
        "REPOSSESSOR",
        "SCHEDULER",
        "TRIGGERS",
    )
} | {"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "[]"}


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
        time.sleep(0.1)


def server_env(home: Path, url: str) -> dict[str, str]:
    """The environment a server, worker or client of ``url`` runs with."""
    return os.environ | QUIET | {"PREFECT_HOME": str(home.resolve()), "PREFECT_API_URL": url}


@contextmanager
def _starting(home: Path, timeout: float) -> Iterator[None]:
    """One private server at a time sets up the home's database.

    Two commands started at once on a fresh ``PREFECT_HOME`` both ran Prefect's database
    migrations on the same SQLite file, and one died. The second now waits (at most
    ``timeout`` s) until the first server answers, then finds the database ready.
    """
    with (home / ".server-start.lock").open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"another eraflow command has been starting its Prefect server in "
                        f"{home} for {timeout:.0f} s: wait for it, or use another PREFECT_HOME"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def private_server(
    home: Path, timeout: float = 120.0, meanwhile: Callable[[], object] | None = None
) -> Iterator[str]:
    """A Prefect server for this process only; yields its API URL, stops it afterwards.

    ``meanwhile`` runs while the server starts (the flow's imports: about 2 s of the 3 s the
    server takes, on a second core). Block registration runs on the first start in ``home``
    and is skipped after it while nothing it depends on changed (:mod:`.block_registration`).
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home / f"private-server-{os.getpid()}.log"
    with _starting(home, timeout):
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
        skip = skip_env(home)
        process = subprocess.Popen(
            [PREFECT, *args],
            env=server_env(home, url) | PRIVATE_SERVICES_OFF | skip,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            if meanwhile is not None:
                meanwhile()
            wait_healthy(url, process, timeout, log)
            if not skip:
                record_registration(home)
        except BaseException:
            stop_tree(process.pid, grace=10.0)
            raise
    try:
        yield url
    finally:
        stop_tree(process.pid, grace=10.0)
    log.unlink(missing_ok=True)  # kept only when the server failed (its tail is in the error)


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


def _worker_env(home: Path, url: str, project: Path) -> dict[str, str]:
    """Workers poll every 2 s and beat every 5 s: a dead one is seen within 15 s."""
    return server_env(home, url) | {
        "ERAFLOW_HOME": str(project.resolve()),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
    }


def _start_worker(pool: str, env: dict[str, str], home: Path) -> None:
    _start(pool, [PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env, home)


def server_up(home: Path, port: int, *, workers: bool, deploy: bool, project: Path) -> list[str]:
    """Start server, pools, deployments and workers; what was started, in order.

    With the server of ``home`` already running, only the workers that are not (a worker
    that died) are started again, on that server's port.
    """
    if _alive(home, "server"):
        url = (_state_dir(home) / "server.url").read_text().strip()
        env = _worker_env(home, url, project)
        started = [pool for pool in POOLS if workers and not _alive(home, pool)]
        for pool in started:
            _start_worker(pool, env, home)
        return started
    url = f"http://127.0.0.1:{port}/api"
    env = _worker_env(home, url, project)
    server = _start(
        "server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        env,
        home,
    )
    wait_healthy(url, server, 180.0, _state_dir(home) / "server.log")
    (_state_dir(home) / "server.url").write_text(url)
    started = ["server"]
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
        started += ["pools", "deployments"]
    if workers:
        for pool in POOLS:
            _start_worker(pool, env, home)
        started += list(POOLS)
    return started


def server_url(home: Path) -> str:
    """The API URL of the server ``server up`` started from ``home``."""
    return (_state_dir(home) / "server.url").read_text().strip()


def restart_worker(home: Path, pool: str, project: Path) -> None:
    """Stop one pool's worker (and its flow runs) and start it again on the running server."""
    if not _alive(home, "server"):
        raise ConfigError(f"no server from {home} runs: eraflow server up first")
    pid_file = _state_dir(home) / f"{pool}.pid"
    if pid_file.is_file():
        stop_tree(int(pid_file.read_text()), grace=5.0)
        pid_file.unlink()
    _start_worker(pool, _worker_env(home, server_url(home), project), home)


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
