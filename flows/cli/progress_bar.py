"""The command's progress bars: one per stage, drawn by rich while a run works in this process.

Stages report through :mod:`eraflow.common.progress` (the same steps that feed the Prefect progress
artifacts); here each becomes a bar with ``n of N`` and the elapsed time. Drawn only on a
terminal: in a pipe or a log file the output stays plain. Prefect's console log lines are
printed through the bars' console while they show, so the two never overwrite each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from eraflow.common.progress import Step, listening


@contextmanager
def stage_bars(console: Console | None = None) -> Iterator[None]:
    """Show a bar per stage while the block runs (nothing when stderr is no terminal)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    shown: dict[str, TaskID] = {}

    def draw(step: Step) -> None:
        total = step.total if step.total >= 0 else None
        if step.stage not in shown:
            shown[step.stage] = bars.add_task(step.stage, total=total, unit=step.unit)
        bars.update(shown[step.stage], completed=step.done, total=total)

    with bars, _prefect_logs_to(bars.console), listening(draw):
        yield


@contextmanager
def _prefect_logs_to(console: Console) -> Iterator[None]:
    """Route Prefect's console log handlers through ``console`` (the live bars' console)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    swapped = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                swapped.append((handler, handler.console))
                handler.console = console
    try:
        yield
    finally:
        for handler, original in swapped:
            handler.console = original
