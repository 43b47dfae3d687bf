"""Era detection settings: one frozen, validated, keyword-only dataclass per concern."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from eraflow.common.errors import ConfigError

__all__ = [
    "LEVELS",
    "BocpdSettings",
    "EraConfig",
    "LevelConfig",
    "Method",
    "Model",
    "Scaling",
    "time_span",
]

Model = Literal["normal", "l2"]
Method = Literal["pelt", "bocpd"]
Scaling = Literal["robust", "zscore"]

#: Era levels, coarsest first: every A boundary is a B boundary, every B boundary a C boundary.
LEVELS: tuple[str, str, str] = ("A", "B", "C")


def time_span(value: str | pd.Timedelta, name: str) -> pd.Timedelta:
    """A positive time span, or a ConfigError naming ``name`` and an example."""
    try:
        td = pd.Timedelta(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}={value!r} is not a time span such as '3h' or '7D'") from exc
    if pd.isna(td) or td <= pd.Timedelta(0):
        raise ConfigError(f"{name}={value!r} must be a positive time span such as '3h'")
    return td


@dataclass(frozen=True, kw_only=True, slots=True)
class LevelConfig:
    """Penalty and minimum era length of one level.

    Parameters
    ----------
    penalty_scale : float
        ``c`` in the BIC-style penalty ``pen = c * n_params * log(n)``, ``n`` being the rows
        searched (detection rows for level C, grid rows for A and B) and ``n_params`` the
        parameters of one segment of the cost (``d + d(d+1)/2`` for ``normal``, ``d`` for
        ``l2``). Larger means fewer eras.
    pen : float, optional
        Absolute penalty (cost units); overrides ``penalty_scale`` when given.
    min_duration : str or Timedelta
        Shortest era, converted to rows with the grid step (rounded up).
    min_size : int, optional
        Shortest era in grid rows; overrides ``min_duration`` when given.
    """

    penalty_scale: float
    pen: float | None = None
    min_duration: str | pd.Timedelta = "3h"
    min_size: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.penalty_scale) and self.penalty_scale > 0):
            raise ConfigError(f"penalty_scale must be finite and > 0, got {self.penalty_scale}")
        if self.pen is not None and not (math.isfinite(self.pen) and self.pen >= 0):
            raise ConfigError(f"pen must be finite and >= 0, got {self.pen}")
        if self.min_size is not None and self.min_size < 1:
            raise ConfigError(f"min_size must be >= 1 row, got {self.min_size}")
        time_span(self.min_duration, "min_duration")

    def min_rows(self, step: pd.Timedelta) -> int:
        """Return the minimum era length in grid rows for a grid ``step``."""
        if self.min_size is not None:
            return int(self.min_size)
        td = time_span(self.min_duration, "min_duration")
        return max(1, math.ceil(td / step))


@dataclass(frozen=True, kw_only=True, slots=True)
class BocpdSettings:
    """BOCPD settings for ``method="bocpd"`` (level C), as time spans of the detection grid.

    Parameters
    ----------
    expected_run : str or Timedelta
        Prior mean era length; the constant hazard is ``detect_step / expected_run``.
    max_run : str or Timedelta
        Run-length truncation ``r_max`` (longer runs are forgotten).
    lag : str or Timedelta
        Evidence window after a candidate change (see :func:`eraflow.stages.eras.bocpd.bocpd`).
    threshold : float
        Change probability at or above which a peak is a boundary, in (0, 1).
    """

    expected_run: str | pd.Timedelta = "12h"
    max_run: str | pd.Timedelta = "14D"
    lag: str | pd.Timedelta = "3h"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("expected_run", "max_run", "lag"):
            time_span(getattr(self, name), name)
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")


def _default_a() -> LevelConfig:
    return LevelConfig(penalty_scale=50.0, min_duration="7D")


def _default_b() -> LevelConfig:
    return LevelConfig(penalty_scale=6.0, min_duration="1D")


def _default_c() -> LevelConfig:
    return LevelConfig(penalty_scale=0.5, min_duration="3h")


@dataclass(frozen=True, kw_only=True, slots=True)
class EraConfig:
    """How eras are detected; every field has a default tuned on real greenhouse years.

    The defaults (C: ``c = 0.5``, 3 h; B: ``c = 6``, 1 day; A: ``c = 50``, 7 days; hourly
    detection, normal cost, variance floor 0.01) give A/B/C = 7/113/657 eras on Knud Jepsen
    compartment 3 (2015-09 to 2016-09), 9/103/350 on compartment 4 and 5/48/193 on a year of
    ``eraflow.stages.simulate``: inside the one-year targets 3-17 / 17-170 / 70-1700.

    Parameters
    ----------
    signals : tuple of str, optional
        Columns to segment on, jointly. Default: one column each for air temperature, CO2,
        humidity (deficit or RH), radiation/light and heating pipe temperature, where present
        (see :func:`eraflow.stages.eras.levels.default_signals`).
    model : {"normal", "l2"}
        Segment cost: mean and covariance change (``normal``) or mean change (``l2``).
    method : {"pelt", "bocpd"}
        How level C is found; A and B are always the penalised optimum over C's boundaries.
    scaling : {"robust", "zscore"}
        Standardisation of each signal before detection: ``(x - median) / (IQR / 1.349)``
        (falling back to the standard deviation when the IQR is 0) or ``(x - mean) / std``.
    detect_step : str or Timedelta, optional
        Level C is detected on block means over this span (an integer number of grid steps,
        blocks aligned on the first row) and mapped back to grid rows: PELT is quadratic in the
        length of an era, so full-resolution detection of a year takes minutes. ``None``
        detects on the grid itself.
    variance_floor : float
        ``eps`` added to the covariance diagonal of the normal cost, in standardised units.
        ruptures uses 1e-6; real sensors are quantised and flat at night, and a floor of that
        size makes every flat stretch an era.
    level_a, level_b, level_c : LevelConfig
        Penalty and minimum length per level (coarsest first).
    gap_min_duration : str or Timedelta, optional
        Shortest stretch of mostly unmeasured era signals that is an era of its own
        (``kind = "gap"``, see :mod:`eraflow.stages.eras.gaps`); ``None`` turns gap eras off.
    gap_max_coverage : float
        "Mostly unmeasured": detection blocks whose share of measured (not filled) signal
        values is below this, in [0, 1].
    bocpd : BocpdSettings
        Used when ``method="bocpd"``.
    """

    signals: tuple[str, ...] | None = None
    model: Model = "normal"
    method: Method = "pelt"
    scaling: Scaling = "robust"
    detect_step: str | pd.Timedelta | None = "1h"
    variance_floor: float = 1e-2
    level_a: LevelConfig = field(default_factory=_default_a)
    level_b: LevelConfig = field(default_factory=_default_b)
    level_c: LevelConfig = field(default_factory=_default_c)
    bocpd: BocpdSettings = field(default_factory=BocpdSettings)
    gap_min_duration: str | pd.Timedelta | None = "6h"
    gap_max_coverage: float = 0.2

    def __post_init__(self) -> None:
        if self.signals is not None:
            if isinstance(self.signals, str):
                raise ConfigError("signals must be a tuple of column names, not one string")
            object.__setattr__(self, "signals", tuple(self.signals))
            if not self.signals:
                raise ConfigError("signals must name at least one column (or be None)")
            if len(set(self.signals)) != len(self.signals):
                raise ConfigError(f"signals has duplicates: {self.signals}")
        if self.model not in ("normal", "l2"):
            raise ConfigError(f"model must be 'normal' or 'l2', got {self.model!r}")
        if self.method not in ("pelt", "bocpd"):
            raise ConfigError(f"method must be 'pelt' or 'bocpd', got {self.method!r}")
        if self.scaling not in ("robust", "zscore"):
            raise ConfigError(f"scaling must be 'robust' or 'zscore', got {self.scaling!r}")
        if self.detect_step is not None:
            time_span(self.detect_step, "detect_step")
        if not (math.isfinite(self.variance_floor) and self.variance_floor > 0):
            raise ConfigError(f"variance_floor must be finite and > 0, got {self.variance_floor}")
        if self.gap_min_duration is not None:
            time_span(self.gap_min_duration, "gap_min_duration")
        if not 0.0 <= self.gap_max_coverage <= 1.0:
            raise ConfigError(f"gap_max_coverage must be in [0, 1], got {self.gap_max_coverage}")
        for name in ("level_a", "level_b", "level_c"):
            if not isinstance(getattr(self, name), LevelConfig):
                raise ConfigError(f"{name} must be a LevelConfig")

    def level(self, name: str) -> LevelConfig:
        """Return the settings of level ``"A"``, ``"B"`` or ``"C"``."""
        if name not in LEVELS:
            raise ConfigError(f"unknown level {name!r}; levels are {LEVELS}")
        cfg: LevelConfig = getattr(self, f"level_{name.lower()}")
        return cfg
