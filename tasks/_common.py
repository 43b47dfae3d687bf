"""What every eraflow task shares: retry rules and progress reporting.

eraflow's tasks carry no tags. Prefect 3.8 acquires a tag concurrency slot for every run of a
tagged task, and on the default (SQLite) server that request took 1.7-2.3 s whenever the
client's 5-second "no such limit" cache had expired (measured): about 4 s of a backfill
chunk's 4.2 s. GPU work holds the ``gpu`` global limit explicitly (``tasks.features``); to
cap another stage, run it under ``prefect.tags(...)`` and create a limit for that tag.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import State, TaskRun

from eraflow.common.progress import Step, report
from eraflow.common.retry import is_transient


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may not happen again (``is_transient``); log the decision."""
    try:
        state.result()
    except Exception as exc:
        transient = is_transient(exc)
        if not transient:
            logging.getLogger("eraflow.common.retry").info(
                "not retried: %s is not a transient failure", type(exc).__name__
            )
        return transient
    return False


class RunProgress:
    """A stage's progress in the UI and on the terminal.

    A Prefect progress artifact ("features: 12 of 40 batches") shows on the run, and each
    step is told to this process's listeners (the command's bar). Call it as the library's
    progress callback ``(done, total, label)``.

    The artifact is updated at most every ``ARTIFACT_INTERVAL_S`` (always the first step, the
    last of a known total, and ``finish``): each update is an API call, an event and a
    database write on the server, and a year's run made 98 of them for 71 task runs
    (benchmarks/bench_prefect_overhead.py). The listeners hear every step.
    """

    ARTIFACT_INTERVAL_S = 5.0

    def __init__(self, stage: str, unit: str) -> None:
        self._stage = stage
        self._unit = unit
        self._artifact: UUID | None = None
        self._posted = float("-inf")
        self._last = Step(stage, 0, 0, unit)

    def __call__(self, done: int, total: int, label: str = "") -> None:
        """Report ``done`` of ``total`` units."""
        step = Step(self._stage, done, total, self._unit, label)
        self._last = step
        now = time.monotonic()
        if self._artifact is None:
            created = create_progress_artifact(progress=step.percent, description=step.text)
            self._artifact = created if isinstance(created, UUID) else getattr(created, "id", None)
            self._posted = now
        elif 0 <= total <= done or now - self._posted >= self.ARTIFACT_INTERVAL_S:
            update_progress_artifact(self._artifact, progress=step.percent, description=step.text)
            self._posted = now
        report(step)

    def finish(self) -> None:
        """Mark the work complete, also when no step was ever reported."""
        total = max(self._last.total, self._last.done)
        self(total, total, "done")


def markdown_image(png: Path, title: str, *, max_bytes: int = 1_500_000) -> str:
    """Markdown that shows a PNG inline in the Prefect UI (a base64 data URI) and names its file.

    The UI renders data-URI images in markdown artifacts; very large images are linked only,
    so the API database does not swell.
    """
    data = png.read_bytes()
    lines = [f"## {title}", ""]
    if len(data) <= max_bytes:
        lines.append(f"![{title}](data:image/png;base64,{base64.b64encode(data).decode()})")
        lines.append("")
    lines.append(f"File: `{png.resolve()}`")
    return "\n".join(lines)
