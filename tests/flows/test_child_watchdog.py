"""The child-run watchdog's two judgements of a lost child, on a real Prefect API.

- A Running child whose heartbeats stopped (its host died or was cut off) is lost once the
  silence passes ``lost_after`` and three heartbeat intervals, timed on the watcher's clock
  from when it first saw the newest heartbeat (the child's clock may be skewed); a new
  heartbeat, or none at all, is never judged lost. The heartbeats are events posted to the
  server with chosen times; the watcher's clock is a counter the tests move.
- A child's process is judged gone only after it was seen on this host carrying the child's
  flow-run id: a bare pid of another host's process is never looked up in this host's table.
``tests/multihost/test_scale_out.py`` (``make multihost``) cuts a real host off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import Event
from prefect.states import Running

from tasks.children import HEARTBEAT, Heartbeats, LocalProcess, LostWorker, wait_for_child


@flow(name="watched-child")
def watched_child() -> None:
    """Never run: the flow its runs belong to."""


@pytest.fixture
def client(prefect_api: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


def running_child(client: SyncPrefectClient) -> FlowRun:
    run = client.create_flow_run(watched_child, name=f"child-{uuid.uuid4().hex[:6]}")
    client.set_flow_run_state(run.id, Running(), force=True)
    return client.read_flow_run(run.id)


def beat(client: SyncPrefectClient, run: FlowRun, *seconds_ago: float) -> None:
    """Heartbeats of ``run`` that occurred ``seconds_ago``; returns once the server lists them."""
    now = datetime.now(UTC)
    events = [
        Event(
            occurred=now - timedelta(seconds=ago),
            event=HEARTBEAT,
            resource={"prefect.resource.id": f"prefect.flow-run.{run.id}"},
        )
        for ago in seconds_ago
    ]
    response = client._client.post("/events", json=[e.model_dump(mode="json") for e in events])
    response.raise_for_status()
    newest = max(events, key=lambda e: e.occurred).id
    deadline = time.monotonic() + 60
    while newest_listed(client, run) != newest:
        assert time.monotonic() < deadline, "the server did not persist the heartbeats in 60 s"
        time.sleep(0.5)


def newest_listed(client: SyncPrefectClient, run: FlowRun) -> uuid.UUID | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    page = client.read_events(
        EventFilter(
            event=EventNameFilter(name=[HEARTBEAT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"]),
        ),
        limit=1,
    )
    return page.events[0].id if page.events else None


class Clock:
    """The watcher's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_child_whose_heartbeats_stopped_is_lost(client: SyncPrefectClient) -> None:
    run = running_child(client)
    beat(client, run, 3600, 3570)  # every 30 s; stamped an hour ago: the child's clock is behind
    clock = Clock()
    watch = Heartbeats(clock)
    assert watch.silence(client, run, lost_after=60) is None  # first seen now: not silent
    clock.now += 89
    assert watch.silence(client, run, lost_after=60) is None  # within 3 intervals
    clock.now += 2
    why = watch.silence(client, run, lost_after=60)
    assert why is not None
    assert why.startswith("no heartbeat for 91 s (one every 30 s)"), why
    assert watch.silence(client, run, lost_after=300) is None  # a longer lost_after: not yet


def test_a_new_heartbeat_or_none_at_all_is_never_lost(client: SyncPrefectClient) -> None:
    quiet = running_child(client)
    clock = Clock()
    silent_watch = Heartbeats(clock)
    clock.now += 10_000
    assert silent_watch.silence(client, quiet, lost_after=1) is None  # heartbeats turned off
    alive = running_child(client)
    beat(client, alive, 60, 30)
    watch = Heartbeats(clock)
    assert watch.silence(client, alive, lost_after=1) is None
    clock.now += 80
    beat(client, alive, 0)  # the next one arrives: the silence starts again
    clock.now += 80
    assert watch.silence(client, alive, lost_after=1) is None


def test_one_heartbeat_is_judged_by_the_declared_interval(client: SyncPrefectClient) -> None:
    # no deployment declares one: Prefect's default (180 s), so 3 x 180 s of silence is lost
    run = running_child(client)
    beat(client, run, 5)
    clock = Clock()
    watch = Heartbeats(clock)
    assert watch.silence(client, run, lost_after=60) is None
    clock.now += 500
    assert watch.silence(client, run, lost_after=60) is None
    clock.now += 100
    why = watch.silence(client, run, lost_after=60)
    assert why is not None and "(one every 180 s)" in why, why


def test_the_wait_gives_up_on_a_silent_child_and_marks_it_crashed(
    client: SyncPrefectClient,
) -> None:
    run = running_child(client)
    beat(client, run, 2, 0)  # every 2 s, then nothing: lost after 3 x 2 s here

    @flow(name="watching-parent")
    def parent() -> None:
        wait_for_child(run.id, timeout=120, lost_after=1, poll=0.5)

    began = time.monotonic()
    with pytest.raises(LostWorker, match="no heartbeat for"):
        parent()
    assert 6 <= time.monotonic() - began < 60
    state = client.read_flow_run(run.id).state
    assert state is not None and state.type.value == "CRASHED"


def sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)


def test_a_process_is_gone_only_after_it_was_seen_as_the_child(client: SyncPrefectClient) -> None:
    run = running_child(client)
    child = sleeper(os.environ | {"PREFECT__FLOW_RUN_ID": str(run.id)})
    other = sleeper(dict(os.environ))  # e.g. another host's pid that exists here too
    try:
        for process, expected in ((child, True), (other, False)):
            client.update_flow_run(run.id, infrastructure_pid=str(process.pid))
            watched = LocalProcess()
            time.sleep(0.5)  # the interpreter has started: its environment is readable
            assert not watched.gone(client.read_flow_run(run.id))  # first look: adopt or not
            assert not watched.gone(client.read_flow_run(run.id))  # alive
            process.kill()
            process.wait()
            assert watched.gone(client.read_flow_run(run.id)) is expected
    finally:
        for process in (child, other):
            if process.poll() is None:
                process.kill()
