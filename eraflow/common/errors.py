"""Exceptions raised by eraflow: each names the problem and what to change."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


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


class TransientError(EraflowError):
    """A failure that may not happen again, so it is retried (a worker lost mid-run)."""


def validation_message(
    exc: ValidationError,
    rename: Callable[[tuple[str | int, ...]], tuple[str | int, ...]] | None = None,
) -> str:
    """``field: problem (got value); ...`` from a pydantic error: no URLs, no model dumps.

    ``rename`` maps an error's location to the names the user gave (flat public names).
    """
    parts = []
    for error in exc.errors():
        location = tuple(error["loc"])
        if rename is not None:
            location = rename(location)
        where = ".".join(str(p) for p in location if p != "__root__")
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        if (
            isinstance(given, str | int | float)
            and len(str(given)) <= 40
            and error["type"] not in ("value_error", "assertion_error")
        ):
            message += f" (got {given!r})"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
