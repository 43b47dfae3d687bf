"""Child runs on work pools that cannot hang their parent: a timeout and a lost-worker watchdog.

``run_deployment(timeout=None)`` waits forever for a child whose worker died: a run a dead
worker had claimed stays Pending, and its parent (a pipeline, a backfill) stays Running. Here
the parent creates the child, then polls it. It gives up, marks the child Crashed and fails,
when

- the child is still Scheduled or Pending and its pool has had no live worker (no heartbeat
  within three heartbeat intervals) for ``lost_after``;
- the child's process, seen on this host, is gone while the child is Pending or Running;
- the child is Running on another host and its flow-run heartbeats (Prefect's
  ``prefect.flow-run.heartbeat`` events, every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds;
  prefect.yaml sets 30) stopped for ``lost_after`` or three heartbeat intervals, whichever is
  longer: the host died or was cut off;
- the child has not ended within ``timeout``.

Detection time is therefore at most ``lost_after`` plus one poll (plus the worker's own
heartbeat interval, 30 s by default) for a dead worker, one poll for a dead process, and the
heartbeat silence above for a lost host. A lost process or host whose pool still has a live
worker is retried as a new child run, which that worker (on another host) takes.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import psutil
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.states import Crashed

from eraflow.common.errors import EraflowError, TransientError
from eraflow.config import PipelineConfig
from tasks._common import retry_transient

LIVE_STATES = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING}


class ChildRunFailed(EraflowError):
    """A child run ended other than Completed, or timed out: not retried."""


class LostWorker(ChildRunFailed, TransientError):
    """A child run's worker or process died: retried, the next try may find a live worker."""


def _pool_has_live_worker(client: SyncPrefectClient, pool: str | None) -> bool:
    if pool is None:
        return True
    now = datetime.now(UTC)
    for worker in client.read_workers_for_work_pool(pool):
        interval = worker.heartbeat_interval_seconds or 30
        last = worker.last_heartbeat_time
        if last is not None and (now - last).total_seconds() <= 3 * interval:
            return True
    return False


class LocalProcess:
    """The child's process, once seen on this host; then whether it is gone.

    A process worker records a bare pid (older Prefect: ``host:pid``), not its host. A pid is
    taken as the child's only when a process of that pid here carries the child's
    ``PREFECT__FLOW_RUN_ID``; a pid never seen so is another host's, judged by its heartbeats,
    never by this host's process table.
    """

    def __init__(self) -> None:
        self.process: psutil.Process | None = None

    def gone(self, run: FlowRun) -> bool:
        """Whether the child's process, seen here before, has ended (False until seen)."""
        if self.process is None:
            self.process = self._find(run)
            return False
        try:  # psutil checks the start time too: a reused pid is another process
            return not self.process.is_running() or self.process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    @staticmethod
    def _find(run: FlowRun) -> psutil.Process | None:
        host, _, number = (run.infrastructure_pid or "").rpartition(":")
        if not number.isdigit() or host not in (socket.gethostname(), ""):
            return None
        try:
            process = psutil.Process(int(number))
            environment = process.environ()
        except psutil.Error:
            return None
        return process if environment.get("PREFECT__FLOW_RUN_ID") == str(run.id) else None


HEARTBEAT = "prefect.flow-run.heartbeat"
HEARTBEATS_MISSED = 3
"""Heartbeat intervals without one before a Running child's host counts as lost."""


def _declared_heartbeat(client: SyncPrefectClient, run: FlowRun) -> float:
    """Seconds between heartbeats the child's deployment sets (prefect.yaml), else Prefect's."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings.models.flows import FlowsSettings

    default = float(FlowsSettings.model_fields["heartbeat_frequency"].default)
    if run.deployment_id is None:
        return default
    try:
        variables = client.read_deployment(run.deployment_id).job_variables or {}
        declared: Any = dict(variables.get("env") or {}).get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
        return float(declared)
    except (ObjectNotFound, TypeError, ValueError):  # gone, unset or templated: Prefect's
        return default


class Heartbeats:
    """A Running child's heartbeats as this host sees them arrive; whether they stopped.

    Silence is timed on this host's monotonic clock from when the newest heartbeat was first
    seen, not from its ``occurred`` stamp: that is the child host's clock, and a host whose
    clock runs a minute behind would look silent while beating. The interval is the one
    between its last two heartbeats (both stamped by the same clock), or the one its
    deployment declares while it has sent one. A child that never sent one (heartbeats turned
    off) is left to the timeout, never declared lost on a guess.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.newest: UUID | None = None
        self.seen_at = 0.0

    def silence(self, client: SyncPrefectClient, run: FlowRun, lost_after: float) -> str | None:
        """Why the child's host counts as lost (its heartbeats stopped), else None."""
        beats = client.read_events(
            EventFilter(
                event=EventNameFilter(name=[HEARTBEAT]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
            ),
            limit=2,
        ).events  # newest first
        if not beats:
            return None
        now = self.clock()
        if beats[0].id != self.newest:
            self.newest, self.seen_at = beats[0].id, now
            return None
        if len(beats) == 2:
            interval = abs((beats[0].occurred - beats[1].occurred).total_seconds())
        else:
            interval = _declared_heartbeat(client, run)
        silent = now - self.seen_at
        if silent <= max(lost_after, HEARTBEATS_MISSED * interval):
            return None
        worker = (run.labels or {}).get("prefect.worker.name", "unknown")
        return (
            f"no heartbeat for {silent:.0f} s (one every {interval:.0f} s) from the host of "
            f"worker {worker}: the host died or was cut off"
        )


def _give_up(
    client: SyncPrefectClient, run: FlowRun, why: str, *, lost: bool = True
) -> ChildRunFailed:
    client.set_flow_run_state(run.id, Crashed(message=why), force=True)
    return _lost_or_failed(client, run, why, lost=lost)


def _lost_or_failed(
    client: SyncPrefectClient, run: FlowRun, why: str, *, lost: bool
) -> ChildRunFailed:
    """The error for a child whose process or worker was lost.

    LostWorker (retried) while a live worker of the pool can take the run again; otherwise
    ChildRunFailed at once, naming the child: a retry would only wait for nobody.
    """
    if lost and _pool_has_live_worker(client, run.work_pool_name):
        return LostWorker(f"{run.name} (flow run {run.id}): {why}")
    alone = f"; no live worker left in {run.work_pool_name}" if lost else ""
    return ChildRunFailed(f"{run.name} (flow run {run.id}): {why}{alone}")


def wait_for_child(
    run_id: UUID, *, timeout: float, lost_after: float, poll: float = 5.0
) -> FlowRun:
    """Wait for a child run to end; returns it Completed, else raises ChildRunFailed."""
    logger = get_run_logger()
    deadline = time.monotonic() + timeout
    no_worker_since: float | None = None
    process = LocalProcess()
    heartbeats = Heartbeats()
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            state = run.state
            kind = state.type if state is not None else StateType.PENDING
            if kind not in LIVE_STATES:
                if kind != StateType.COMPLETED:
                    message = state.message if state is not None else ""
                    raise _lost_or_failed(
                        client,
                        run,
                        f"ended {state.name if state else kind}: {message}",
                        lost=kind == StateType.CRASHED,  # its process died, not its work
                    )
                return run
            if kind in (StateType.PENDING, StateType.RUNNING) and process.gone(run):
                raise _give_up(
                    client, run, "its process is gone (the worker or the process was killed)"
                )
            if kind == StateType.RUNNING and (why := heartbeats.silence(client, run, lost_after)):
                raise _give_up(client, run, why)
            if kind in (StateType.SCHEDULED, StateType.PENDING) and not _pool_has_live_worker(
                client, run.work_pool_name
            ):
                no_worker_since = no_worker_since or time.monotonic()
                if time.monotonic() - no_worker_since > lost_after:
                    raise _give_up(
                        client,
                        run,
                        f"no live worker in {run.work_pool_name} for "
                        f"{lost_after:.0f} s (a worker died or none "
                        "runs)",
                        lost=False,
                    )
            else:
                no_worker_since = None
            if time.monotonic() > deadline:
                raise _give_up(
                    client, run, f"not finished after {timeout:.0f} s (child_timeout)", lost=False
                )
            logger.debug("waiting for %s: %s", run.name, kind.value)
            time.sleep(poll)


def run_child(
    deployment: str,
    *,
    parameters: dict[str, Any],
    name: str,
    tags: list[str],
    timeout: float,
    lost_after: float,
    poll: float = 5.0,
) -> FlowRun:
    """Create a run of ``deployment`` and wait for it with the watchdog above."""
    from prefect.deployments import run_deployment

    created = cast(
        "FlowRun",
        run_deployment(deployment, parameters=parameters, flow_run_name=name, tags=tags, timeout=0),
    )
    return wait_for_child(created.id, timeout=timeout, lost_after=lost_after, poll=poll)


def deployment_parameters(deployment: str | None) -> dict[str, Any]:
    """A deployment's own default parameters (none without a deployment)."""
    if deployment is None:
        return {}
    with get_client(sync_client=True) as client:
        return dict(client.read_deployment_by_name(deployment).parameters or {})


@task(
    name="dispatch",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
    task_run_name="dispatch[{deployment}/{device} #{worker}]",
)
def run_pool_group(
    deployment: str,
    device: str,
    worker: int,
    batches: list[dict[str, Any]],
    config: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """One worker group's batches as a child run of the pool's era-features deployment.

    Watched: a lost worker or a timeout fails it instead of hanging; a lost worker
    (transient) is retried once, as a new child run.
    """
    settings = PipelineConfig.build(**config)
    child = run_child(
        f"{deployment}/{device}",
        parameters={
            "batches": batches,
            "config": config,
            "device": device,
            "run_id": run_id,
            "group": worker,
        },
        name=f"era-features[{device} #{worker}]",
        tags=["era-features", device],
        timeout=settings.orchestration.seconds("child_timeout"),
        lost_after=settings.orchestration.seconds("lost_worker_after"),
    )
    return {"flow_run_id": str(child.id), "device": device, "batches": len(batches)}


_FOLLOWING = threading.Event()


def _is_worker(pid: int) -> bool:
    """Whether process ``pid`` is a ``prefect worker``."""
    try:
        command = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "worker" in command and any("prefect" in part for part in command)


def _started_by_worker() -> bool:
    """Whether a worker started this process: its environment at start (Linux) names one.

    Read from ``/proc/self/environ``, which later changes to ``os.environ`` do not touch.
    """
    try:
        return b"\0PREFECT__WORKER_NAME=" in b"\0" + Path("/proc/self/environ").read_bytes()
    except OSError:
        return False


def follow_worker(poll: float = 1.0, grace: float = 5.0) -> None:
    """In a flow run a worker started: stop this process when that worker dies.

    A process worker starts each flow run in a session of its own and reads its output, so
    killing the worker (or its process group) left the runs computing with nobody to report
    to, until their next console log line hit the broken pipe and ended them with
    "aborted by Python system exit call" (rich exits on a broken pipe), minutes later. Here a
    daemon thread watches the parent; once the run is orphaned it points its output at
    /dev/null and sends itself SIGTERM (Prefect marks the run Crashed), then SIGKILL after
    ``grace`` seconds if the main thread is stuck in compiled code; the parent's watchdog
    names the run. Nothing happens unless the parent is a ``prefect worker``, or when
    already following.
    """
    if _FOLLOWING.is_set():
        return
    parent = os.getppid()
    under_worker = _is_worker(parent)
    if not (under_worker or _started_by_worker()):
        return
    _FOLLOWING.set()

    def watch() -> None:
        # Orphaned already (the worker died between starting the run and this call): stop now.
        while under_worker and os.getppid() == parent:
            time.sleep(poll)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)  # the worker read these: now a broken pipe
        os.dup2(quiet, 2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="follow-worker", daemon=True).start()
