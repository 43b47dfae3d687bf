"""release_memory: a full garbage collection only when memory calls for it."""

from __future__ import annotations

import gc

import pytest

from eraflow.common import memory


@pytest.fixture
def collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each full collection release_memory makes, counted (gc.collect itself is not run)."""
    made: list[int] = []
    monkeypatch.setattr(memory, "_after_last_collection", 0)  # restored after the test
    monkeypatch.setattr(gc, "collect", lambda *a, **k: made.append(1) or 0)
    return made


def test_small_stage_does_nothing(collections: list[int]) -> None:
    memory.release_memory(memory.SMALL_STAGE_VALUES - 1)
    assert collections == []


def test_large_stage_collects(collections: list[int]) -> None:
    memory.release_memory(memory.SMALL_STAGE_VALUES)
    assert collections == [1]


def test_task_end_collects_only_after_growth(
    collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rss = [1_000 * 1024**2]
    monkeypatch.setattr(memory, "resident_bytes", lambda: rss[0])
    memory.release_memory(collect=True)  # the baseline: right after a collection
    assert collections == [1]
    rss[0] += memory.COLLECT_GROWTH // 2
    memory.release_memory()
    assert collections == [1]  # grew, but less than COLLECT_GROWTH: no walk of every object
    rss[0] += memory.COLLECT_GROWTH
    memory.release_memory()
    assert collections == [1, 1]


def test_unknown_resident_size_collects(
    collections: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "resident_bytes", lambda: 0)
    memory.release_memory()
    assert collections == [1]


def test_resident_bytes_reads_this_process() -> None:
    assert memory.resident_bytes() > 10 * 1024**2
