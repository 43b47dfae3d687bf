"""Errors raised by era detection; each subclasses an ``eraflow.common.errors`` class."""

from __future__ import annotations

from eraflow.common.errors import ConfigError, DataError

__all__ = ["BadSegmentationParameters", "SignalDataError", "UnknownSignalError"]


class UnknownSignalError(ConfigError):
    """A requested signal (column) is not in the values frame."""


class SignalDataError(DataError):
    """A signal cannot be segmented (all missing, wrong shape, no usable rows)."""


class BadSegmentationParameters(DataError):
    """No segmentation exists for these parameters (e.g. fewer rows than ``min_size``)."""
