"""Exceptions raised by eraflow: each names the problem and what to change."""

from __future__ import annotations


class EraflowError(Exception):
    """Base class for every error eraflow raises on purpose."""


class ConfigError(EraflowError, ValueError):
    """A mapping, catalogue or parameter is malformed."""


class IngestError(EraflowError, ValueError):
    """A source file cannot be read into the canonical form."""


class DataError(EraflowError, ValueError):
    """Data violates the contract (duplicate or unsorted times, empty range, wrong types)."""


class StoreError(EraflowError):
    """A read from or write to the result store failed."""
