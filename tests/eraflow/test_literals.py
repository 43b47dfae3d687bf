"""Feature names are read back on many threads at once (era batches run on the task runner's).

CPython 3.11's AST constructor keeps one recursion counter per interpreter; a finalizer that
hands the GIL to another thread mid-parse makes two parses interleave and fail with
``SystemError: AST constructor recursion depth mismatch`` (CI saw one era batch fail so). The
stress below makes such finalizers run often: with bare ``ast.literal_eval`` several threads
failed in every try; the expected values are written out by hand.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from eraflow.stages.features import FeatureSpec, parse_feature_name
from eraflow.stages.greenhouse import parse_greenhouse_name

THREADS = 4
PARSES_PER_THREAD = 4_000


class _CycleWithFinalizer:
    """Cyclic garbage whose finalizer runs Python code, so the GIL can move during a parse."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        sum(range(50))


@contextmanager
def _gil_moving_often() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(10, 1, 1)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)


def _hammer(parse: Callable[[], Any], expected: Any) -> list[BaseException]:
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(PARSES_PER_THREAD):
                _CycleWithFinalizer()
                got = parse()
                if got != expected:
                    raise AssertionError(f"{got!r} != {expected!r}")
        except BaseException as exc:  # reported by the test, not swallowed
            failures.append(exc)

    with _gil_moving_often():
        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return failures


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            'fft_coefficient__attr_"real"__coeff_3',
            FeatureSpec("fft_coefficient", {"attr": "real", "coeff": 3}),
        ),
        ("quantile__q_0.9", FeatureSpec("quantile", {"q": 0.9})),
    ],
)
def test_feature_names_read_back_on_many_threads_at_once(name: str, expected: FeatureSpec) -> None:
    failures = _hammer(lambda: parse_feature_name(name), expected)
    assert failures == []


def test_greenhouse_names_read_back_on_many_threads_at_once() -> None:
    name = 'daily_light_integral__stat_"mean"'
    expected = FeatureSpec("daily_light_integral", {"stat": "mean"})
    assert _hammer(lambda: parse_greenhouse_name(name), expected) == []
