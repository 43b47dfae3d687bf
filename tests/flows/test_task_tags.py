"""eraflow's tasks carry no tags: Prefect 3.8 acquires a concurrency slot per tagged task run."""

from __future__ import annotations

import importlib
import pkgutil

from prefect import Task

import flows
import tasks


def test_no_eraflow_task_carries_tags() -> None:
    found = {}
    for package in (tasks, flows):
        for module in pkgutil.iter_modules(package.__path__):
            loaded = importlib.import_module(f"{package.__name__}.{module.name}")
            for name, value in vars(loaded).items():
                if isinstance(value, Task) and value.__module__ == loaded.__name__:
                    found[f"{loaded.__name__}.{name}"] = set(value.tags)
    assert len(found) >= 12  # every stage's task was seen
    assert {name: tags for name, tags in found.items() if tags} == {}
