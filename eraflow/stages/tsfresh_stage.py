"""tsfresh stage: the tsfresh features the array engine does not compute, per (era, sensor).

The stage builds one tsfresh long frame from all era slices of one entity and calls
``tsfresh.extract_features`` once, with ``kind_to_fc_parameters`` carrying each sensor's profile
(from the catalogue, or one profile for all). Calculators already computed by the feature engine
(:mod:`eraflow.stages.features`, same names and values) are subtracted from the settings first,
so no feature is computed twice: engine rows plus stage rows give exactly tsfresh's profile.

NaN rule (tsfresh does not accept NaN)
--------------------------------------
Per (era, sensor), the values still missing after gap-fill (gaps longer than the fill limit) are
dropped before extraction. Gap-filled values are kept (``include_filled=True``, the default) or
dropped as well (``include_filled=False``, using the fill mask). tsfresh then sees the remaining
values as one contiguous series (differences, lags and autocorrelations span the holes), which
is the rule the feature engine uses too, so both engines agree on every shared feature. The
series keeps its timestamps as index, so index-based calculators (``linear_trend_timewise``)
use real elapsed time, holes included. An (era, sensor) with no value left yields **no rows**
(tsfresh never sees it); after :func:`eraflow.stages.features.to_wide` it reads as NaN, like the
engine's NaN rows for empty eras. Values tsfresh itself returns as NaN (series too short for a
lag, say) are kept as NaN rows.

Threads: the call runs under ``threadpool_limits(1)`` (BLAS/OpenMP), since setting
``OPENBLAS_NUM_THREADS`` after NumPy is imported does nothing, and with ``n_jobs=0`` (no
process pool: parallelism belongs to the orchestrator, over era batches).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from eraflow.catalogue import Catalogue, load_catalogue
from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.features import FEATURE_COLUMNS, feature_registry, profile_specs
from eraflow.stages.features.engine import to_utc_ns, validate_inputs

StageProfile = Literal["catalogue", "minimal", "efficient", "comprehensive"]
TsfreshProfile = Literal["minimal", "efficient", "comprehensive"]
TSFRESH_PROFILES: tuple[str, ...] = ("minimal", "efficient", "comprehensive")
ENGINE_NAME = "tsfresh"

# The engine profile whose tsfresh-compatible features stand in for each tsfresh profile; the
# engine has no comprehensive profile, and everything it has is cheap, so "efficient" covers it.


class _WithoutMatrixProfileNotice(logging.Filter):
    """Drops tsfresh's notice that matrix_profile's ``matrixprofile`` package is missing.

    tsfresh logs it for every settings object it builds (16-31 lines a run); the stage never
    asks for that calculator, so the line tells a user nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Dependency not available for matrix_profile" not in record.getMessage()


logging.getLogger("tsfresh.feature_extraction.settings").addFilter(_WithoutMatrixProfileNotice())
# statsmodels (under tsfresh's ADF and AR calculators) warns about its own future defaults.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"statsmodels(\..*)?")

_ENGINE_PROFILE = {"minimal": "minimal", "efficient": "efficient", "comprehensive": "efficient"}

Settings = dict[str, list[dict[str, Any]] | None]
EngineProvides = Iterable[str] | Mapping[str, Iterable[str]] | None


def tsfresh_settings(profile: str) -> Settings:
    """A fresh copy of tsfresh's settings for ``profile`` as ``{calculator: None | [params]}``.

    Raises
    ------
    ConfigError
        When ``profile`` is not one of :data:`TSFRESH_PROFILES`.
    """
    from tsfresh.feature_extraction import settings as ts

    classes = {
        "minimal": ts.MinimalFCParameters,
        "efficient": ts.EfficientFCParameters,
        "comprehensive": ts.ComprehensiveFCParameters,
    }
    if profile not in classes:
        raise ConfigError(
            f"unknown tsfresh profile {profile!r}; use one of {TSFRESH_PROFILES} "
            "(or 'catalogue' for each sensor's tsfresh_profile)"
        )
    return {k: copy.deepcopy(v) for k, v in dict(classes[profile]()).items()}


def combo_name(calculator: str, params: Mapping[str, Any] | None) -> str:
    """The feature name tsfresh derives from one (calculator, params) combination.

    Same rule as tsfresh's ``convert_to_output_format`` (and :class:`FeatureSpec.name`):
    parameters sorted by name, strings quoted. A combiner that names a default parameter in
    its columns (``augmented_dickey_fuller`` writes ``autolag_"AIC"``) gets it here too, so the
    name is the column tsfresh writes.
    """
    if not params:
        return calculator
    from tsfresh.utilities.string_manipulation import convert_to_output_format

    named = {**_COLUMN_DEFAULTS.get(calculator, {}), **params}
    return f"{calculator}__{convert_to_output_format(named)}"


# Parameters tsfresh's combiners put in their column names even when the settings omit them.
_COLUMN_DEFAULTS: dict[str, dict[str, Any]] = {"augmented_dickey_fuller": {"autolag": "AIC"}}


def settings_names(settings: Mapping[str, list[dict[str, Any]] | None]) -> list[str]:
    """Names of every (calculator, params) combination of ``settings``, in settings order."""
    out: list[str] = []
    for calc, grid in settings.items():
        if grid is None:
            out.append(calc)
        else:
            out.extend(combo_name(calc, p) for p in grid)
    return out


def engine_tsfresh_names(profile: str) -> frozenset[str]:
    """Names of the tsfresh-compatible features the engine computes for a tsfresh ``profile``.

    Only features whose calculator is flagged ``tsfresh`` count (same names and values as
    tsfresh); engine-only features (rolling, coverage, extra quantiles) never match a tsfresh
    name, and the subtraction ignores names that are not in the tsfresh settings anyway.
    """
    if profile not in _ENGINE_PROFILE:
        raise ConfigError(f"unknown tsfresh profile {profile!r}; use one of {TSFRESH_PROFILES}")
    return engine_profile_names(_ENGINE_PROFILE[profile])


def engine_profile_names(engine_profile: str) -> frozenset[str]:
    """Names of the tsfresh-compatible features one engine profile computes.

    The pipeline passes these as ``engine_provides`` for the profile it actually ran, which
    may differ from the sensors' tsfresh profiles (an engine run on "minimal" provides less).
    """
    reg = feature_registry()
    return frozenset(s.name for s in profile_specs(engine_profile) if reg[s.calculator].tsfresh)


def subtract_features(
    settings: Mapping[str, list[dict[str, Any]] | None], names: Iterable[str]
) -> Settings:
    """Remove exact combinations (by name) or whole calculators from tsfresh settings.

    Parameters
    ----------
    settings
        ``{calculator: None | [param dicts]}``; not modified.
    names
        Feature names (``"quantile__q_0.1"``) remove that combination only; a bare calculator
        name removes the calculator (with all its parameters, or the parameterless one).

    Returns
    -------
    dict
        A new settings dict; a calculator whose parameter list becomes empty is dropped (tsfresh
        would call it without parameters otherwise).
    """
    drop = set(names)
    out: Settings = {}
    for calc, grid in settings.items():
        if calc in drop:
            continue
        if grid is None:
            out[calc] = None
            continue
        kept = [copy.deepcopy(p) for p in grid if combo_name(calc, p) not in drop]
        if kept:
            out[calc] = kept
    return out


def _check_sensor_names(sensors: Sequence[str]) -> None:
    for s in sensors:
        if not isinstance(s, str) or not s:
            raise ConfigError(f"sensor names must be non-empty strings, got {s!r}")
        if "__" in s:
            raise ConfigError(
                f"sensor name {s!r} contains '__', which tsfresh uses to separate the sensor from "
                "the feature; rename the column (e.g. replace '__' by '_') in the catalogue/mapping"
            )


def tsfresh_calculators() -> frozenset[str]:
    """Names of every tsfresh feature calculator (functions carrying tsfresh's ``fctype``)."""
    from tsfresh.feature_extraction import feature_calculators as fc

    return frozenset(name for name, f in vars(fc).items() if callable(f) and hasattr(f, "fctype"))


def _check_exclude(exclude: Iterable[str]) -> list[str]:
    names = list(exclude)
    if isinstance(exclude, str):
        raise ConfigError("exclude must be a collection of names, not a string")
    known = tsfresh_calculators() if names else frozenset()
    out = []
    for name in names:
        calc = str(name).split("__", 1)[0]
        if calc not in known:
            raise ConfigError(
                f"exclude names {name!r}, but {calc!r} is no tsfresh calculator; "
                f"known: {', '.join(sorted(known))}"
            )
        out.append(str(name))
    return out


def _engine_names_for(sensor: str, profile: str, engine_provides: EngineProvides) -> frozenset[str]:
    if engine_provides is None:
        return engine_tsfresh_names(profile)
    if isinstance(engine_provides, Mapping):
        return frozenset(engine_provides.get(sensor, ()))
    if isinstance(engine_provides, str):
        raise ConfigError("engine_provides must be a collection of feature names, not a string")
    return frozenset(engine_provides)


def sensor_profiles(
    sensors: Sequence[str], profile: StageProfile, catalogue: Catalogue | None = None
) -> dict[str, str]:
    """The tsfresh profile of each sensor: the catalogue's ``tsfresh_profile`` or ``profile``.

    Sensors missing from the catalogue get its conservative default (``minimal``).
    """
    if profile == "catalogue":
        cat = catalogue if catalogue is not None else load_catalogue()
        return {s: cat.get(s).tsfresh_profile for s in sensors}
    if profile not in TSFRESH_PROFILES:
        raise ConfigError(
            f"unknown profile {profile!r}; use 'catalogue' or one of {TSFRESH_PROFILES}"
        )
    return dict.fromkeys(sensors, profile)


def stage_settings(
    sensors: Sequence[str],
    *,
    profile: StageProfile = "catalogue",
    catalogue: Catalogue | None = None,
    exclude: Iterable[str] = (),
    engine_provides: EngineProvides = None,
) -> dict[str, Settings]:
    """The ``kind_to_fc_parameters`` the stage passes to tsfresh, one settings dict per sensor.

    Each is the sensor's profile minus the engine's features minus ``exclude``; a sensor left
    with nothing maps to ``{}`` (the stage skips it).

    Parameters
    ----------
    sensors
        Sensor (column) names; none may contain ``"__"``.
    profile
        ``"catalogue"`` (each sensor's ``tsfresh_profile``) or one tsfresh profile for all.
    catalogue
        Catalogue for ``profile="catalogue"``; the packaged one when None.
    exclude
        Calculator names or full feature names to leave out (e.g. a slow calculator).
    engine_provides
        Feature names (without sensor) the feature engine computes: one collection for every
        sensor, or ``{sensor: names}`` (a sensor absent from the mapping gets nothing
        subtracted: use that when the engine does not run on it). None derives the names from
        :mod:`eraflow.stages.features` for each sensor's profile (:func:`engine_tsfresh_names`).
    """
    _check_sensor_names(sensors)
    profiles = sensor_profiles(sensors, profile, catalogue)
    excl = _check_exclude(exclude)
    out: dict[str, Settings] = {}
    for s in sensors:
        settings = tsfresh_settings(profiles[s])
        drop = set(_engine_names_for(s, profiles[s], engine_provides)) | set(excl)
        out[s] = subtract_features(settings, drop)
    return out


def _eras_for(eras: pd.DataFrame, entity: str) -> pd.DataFrame:
    eras_e = eras
    if "entity" in eras.columns:
        eras_e = eras[eras["entity"].astype(str) == str(entity)]
    eras_e = eras_e.reset_index(drop=True)
    keys = eras_e[["level", "era_id"]].astype({"level": str})
    if keys.duplicated().any():
        dup = keys[keys.duplicated()].iloc[0].tolist()
        raise DataError(f"eras has duplicate (level, era_id) {dup} for entity {entity!r}")
    return eras_e


def tsfresh_long_frame(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    sensors: Sequence[str],
    *,
    include_filled: bool = True,
) -> pd.DataFrame:
    """The tsfresh long frame of all (era, sensor) slices, NaN (and optionally fills) dropped.

    Parameters
    ----------
    values, fill_mask
        One entity's grid and fill mask (see :func:`tsfresh_features`).
    eras
        Eras of that entity; the era key ``id`` is the era's row position in ``eras``.
    sensors
        Columns to take.
    include_filled
        Keep gap-filled values (True) or drop them (False).

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (int64), ``kind`` (sensor), ``time`` (UTC), ``value`` (float64), indexed
        by the same timestamps (unnamed); rows sorted by (id, kind position, time).
    """
    t = values.index.as_unit("ns").asi8
    r0 = np.searchsorted(t, to_utc_ns(eras["start"]), side="left")
    r1 = np.maximum(np.searchsorted(t, to_utc_ns(eras["end"]), side="left"), r0)
    lengths = r1 - r0
    era_of = np.repeat(np.arange(len(eras), dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths
    rows = np.repeat(r0, lengths) + np.arange(lengths.sum()) - np.repeat(first, lengths)
    x = values[list(sensors)].to_numpy(dtype=np.float64)[rows]
    if np.isinf(x).any():
        bad = [s for j, s in enumerate(sensors) if np.isinf(x[:, j]).any()]
        raise DataError(f"sensors {bad} hold infinite values; drop them in aggregation (ranges)")
    keep = ~np.isnan(x)
    if not include_filled and fill_mask is not None:
        keep &= ~fill_mask[list(sensors)].to_numpy(dtype=bool)[rows]
    # (era, sensor, time) order: era-major, then sensor, then time
    nsens = len(sensors)
    ids = np.repeat(era_of, nsens).reshape(-1, nsens)
    kind_pos = np.broadcast_to(np.arange(nsens), x.shape)
    tt = np.broadcast_to(t[rows][:, None], x.shape)
    order = np.lexsort((tt[keep], kind_pos[keep], ids[keep]))
    kinds = np.asarray(sensors, dtype=object)[kind_pos[keep][order]]
    time = pd.DatetimeIndex(tt[keep][order].astype("datetime64[ns]")).tz_localize("UTC")
    # the index carries the timestamps to index-based calculators; it must not be named like the
    # sort column (pandas refuses an ambiguous label)
    return pd.DataFrame(
        {
            "id": ids[keep][order],
            "kind": kinds,
            "time": time,
            "value": x[keep][order],
        },
        index=time.rename(None),
    )


def _empty_result() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype=str) for c in FEATURE_COLUMNS})
    out["era_id"] = out["era_id"].astype(np.int64)
    out["value"] = out["value"].astype(np.float64)
    return out


def _run_tsfresh(long: pd.DataFrame, kind_settings: Mapping[str, Settings]) -> list[tuple]:
    from threadpoolctl import threadpool_limits
    from tsfresh import extract_features

    with threadpool_limits(limits=1):
        return extract_features(
            long,
            column_id="id",
            column_sort="time",
            column_kind="kind",
            column_value="value",
            kind_to_fc_parameters=dict(kind_settings),
            n_jobs=0,
            disable_progressbar=True,
            pivot=False,
        )


def tsfresh_features(
    values: pd.DataFrame,
    fill_mask: pd.DataFrame | None,
    eras: pd.DataFrame,
    *,
    entity: str,
    profile: StageProfile = "catalogue",
    catalogue: Catalogue | None = None,
    exclude: Iterable[str] = (),
    include_filled: bool = True,
    engine_provides: EngineProvides = None,
    sensors: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The tsfresh features of every (era, sensor) of one entity, in the long feature schema.

    Parameters
    ----------
    values
        Grid of one entity: DatetimeIndex "time" (UTC, sorted, unique), one float column per
        sensor, NaN where a value stayed missing.
    fill_mask
        Bool frame like ``values``, True where gap-fill produced the value; None = no fills.
    eras
        Columns ``level``, ``era_id``, ``start``, ``end`` (UTC, half-open ``[start, end)``);
        an ``entity`` column, when present, is filtered to ``entity``.
    entity
        Entity key written to the output.
    profile
        ``"catalogue"`` (each sensor's ``tsfresh_profile``), or ``"minimal"``, ``"efficient"``,
        ``"comprehensive"`` for every sensor.
    catalogue
        Catalogue used with ``profile="catalogue"`` (the packaged one when None).
    exclude
        tsfresh calculator names or full feature names not to compute.
    include_filled
        Whether gap-filled values enter the series (see the module's NaN rule).
    engine_provides
        Features the engine computes (see :func:`stage_settings`); ``()`` computes the whole
        profile with tsfresh.
    sensors
        Subset of columns (default: all).

    Returns
    -------
    pandas.DataFrame
        Columns exactly :data:`eraflow.stages.features.FEATURE_COLUMNS` with ``engine="tsfresh"``,
        ``feature`` the tsfresh name after ``<sensor>__``; rows ordered by era (as in ``eras``),
        sensor (as in ``values``/``sensors``), then tsfresh's feature order. Deterministic.
    """
    validate_inputs(values, fill_mask, eras)
    cols = list(values.columns) if sensors is None else list(sensors)
    unknown = [c for c in cols if c not in values.columns]
    if unknown:
        raise ConfigError(f"unknown sensors {unknown}; values has {list(values.columns)}")
    kind_settings = stage_settings(
        cols,
        profile=profile,
        catalogue=catalogue,
        exclude=exclude,
        engine_provides=engine_provides,
    )
    active = [s for s in cols if kind_settings[s]]
    eras_e = _eras_for(eras, entity)
    if not active or eras_e.empty:
        return _empty_result()
    long = tsfresh_long_frame(values, fill_mask, eras_e, active, include_filled=include_filled)
    if long.empty:
        return _empty_result()
    result = _run_tsfresh(long, {s: kind_settings[s] for s in active})
    return _to_long_schema(result, eras_e, active, entity)


def _to_long_schema(
    result: Sequence[tuple], eras: pd.DataFrame, sensors: Sequence[str], entity: str
) -> pd.DataFrame:
    if not result:
        return _empty_result()
    ids, names, vals = zip(*result, strict=True)
    ids_a = np.asarray(ids, dtype=np.int64)
    sensor, feature = zip(*(n.split("__", 1) for n in names), strict=True)
    spos = {s: i for i, s in enumerate(sensors)}
    sens_pos = np.fromiter((spos[s] for s in sensor), dtype=np.int64, count=len(sensor))
    # tsfresh's order within one (id, kind) is its settings order: keep it (stable sort)
    order = np.lexsort((sens_pos, ids_a))
    out = pd.DataFrame(
        {
            "entity": str(entity),
            "level": eras["level"].astype(str).to_numpy(dtype=object)[ids_a[order]],
            "era_id": eras["era_id"].to_numpy(dtype=np.int64)[ids_a[order]],
            "sensor": np.asarray(sensor, dtype=object)[order],
            "feature": np.asarray(feature, dtype=object)[order],
            "value": np.asarray(vals, dtype=np.float64)[order],
            "engine": ENGINE_NAME,
        }
    )
    for c in ("entity", "level", "sensor", "feature", "engine"):
        out[c] = out[c].astype(str)
    return out.reset_index(drop=True)
