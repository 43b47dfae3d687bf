"""Tests here run against a real (temporary) Prefect API, shared by the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_api: None) -> None:
    """Start (once) and use the session's Prefect test server."""
