"""Progress, as people see it: 'n of N' progress artifacts per stage in Prefect, and bars on
the command when it runs in a terminal (plain output in a pipe)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId, ArtifactFilterType

from eraflow.common.progress import Step, listening
from eraflow.config import SimulatorSettings
from flows.pipeline import feature_pipeline
from tasks._common import RunProgress
from tests.conftest import REPO


def test_each_stage_reports_n_of_n_to_prefect_and_to_listeners(tmp_path: Path) -> None:
    heard: list[Step] = []
    with listening(heard.append):
        state = feature_pipeline(
            store=str(tmp_path / "s"),
            simulator=SimulatorSettings(days=2),
            selection_levels=["A"],
            return_state=True,
        )
    assert state.is_completed(), state.message
    summary = state.result()
    batches = sum(c.batches for c in summary.computed)
    last = {step.stage: step for step in heard}
    assert last["eras"].text == "eras: 2 of 2 entities"
    assert last["features on cpu"].text == f"features on cpu: {batches} of {batches} batches"
    assert last["selection sim_a+sim_b/A"].percent == 100.0
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])),
        )
    described = {str(a.description) for a in artifacts}
    assert "eras: 2 of 2 entities" in described
    assert f"features on cpu: {batches} of {batches} batches" in described


def _shown(artifact: UUID | None) -> str:
    """The description the Prefect server holds for a progress artifact now."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact]))
        )
    return str(found[0].description)


def test_the_artifact_is_updated_at_most_every_interval_and_always_at_the_end() -> None:
    heard: list[str] = []

    @flow
    def steps(interval: float) -> list[str]:
        progress = RunProgress("t", "steps")
        progress.ARTIFACT_INTERVAL_S = interval
        seen = []
        for done in (1, 2, 3, 4):
            progress(done, 4)
            seen.append(_shown(progress._artifact))
        return seen

    with listening(lambda step: heard.append(step.text)):
        throttled = steps(3600.0)
        every = steps(0.0)
    assert throttled == ["t: 1 of 4 steps"] * 3 + ["t: 4 of 4 steps"]
    assert every == [f"t: {n} of 4 steps" for n in (1, 2, 3, 4)]
    assert heard == [f"t: {n} of 4 steps" for n in (1, 2, 3, 4)] * 2  # the bar hears each


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run a command with a pseudo-terminal as stdout and stderr; all it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env, cwd=REPO
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the command closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0, b"".join(chunks)[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_the_command_draws_bars_in_a_terminal_and_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    eraflow = str(REPO / ".venv" / "bin" / "eraflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(tmp_path / "home"),
        "COLUMNS": "120",
        "TERM": "xterm-256color",
    }
    args = ["run", "--simulator.days", "2", "--selection-levels", "A"]
    shown = _run_in_terminal([eraflow, *args, "--store", str(tmp_path / "tty")], env)
    assert "features on cpu" in shown and "━" in shown  # a bar, with its stage
    assert "flow run Completed" in shown
    piped = subprocess.run(
        [eraflow, *args, "--store", str(tmp_path / "pipe")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "━" not in piped.stderr + piped.stdout  # no bar where nobody watches
    assert "flow run Completed" in piped.stdout
