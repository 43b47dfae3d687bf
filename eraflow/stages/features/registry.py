"""Feature registry: calculators, their parameter grids, profiles and the reversible names.

Modelled on tsfresh's ``feature_calculators`` + ``settings``: each calculator is a small
function registered by a decorator carrying its attributes; profiles are *discovered* from
those attributes, never listed by hand (except the seed set, which is a fixed contract); and a
feature name ``<calculator>__<param>_<value>__...`` (params sorted by name, strings quoted)
parses back into the calculator and its parameters, exactly like tsfresh's
``convert_to_output_format`` / ``get_config_from_string``.

Calculator contract
-------------------
``func(batch, params) -> array`` of shape ``(len(params), batch.nseg)``, float64, on the batch's
array module, where ``params`` is a list of parameter dicts (a calculator with no parameters gets
``[{}]``). Computing all parameter combinations in one call shares the work (sorting, FFTs).

Layering
--------
This module is a leaf of the feature engine: it imports no calculator module. Calculator modules
import it (for :func:`feature`) and :mod:`eraflow.stages.features.kernels`, nothing else of the
package; :mod:`eraflow.stages.features.catalog` imports them all, so the registry is complete
as soon as ``eraflow.stages.features`` is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eraflow.common.errors import ConfigError
from eraflow.common.literals import read_literal

Profile = Literal["minimal", "efficient", "comprehensive", "seeds"]
PROFILES: tuple[str, ...] = ("minimal", "efficient", "comprehensive", "seeds")
Input = Literal["values", "grid"]

CalculatorFunc = Callable[[Any, list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class Calculator:
    """One registered feature calculator.

    Attributes
    ----------
    name
        Calculator name, the first part of a feature name (tsfresh's name when ``tsfresh``).
    func
        The implementation (see the module docstring for its contract).
    params
        The default parameter grid (``[{}]`` when it takes none), in tsfresh's order.
    tsfresh
        True when values equal ``tsfresh.feature_extraction.feature_calculators.<name>``.
    minimal
        Member of the ``minimal`` profile (tsfresh's ``minimal`` attribute).
    input
        ``"values"``: computed on the era's valid values with NaN dropped (tsfresh semantics);
        ``"grid"``: computed on the regular grid with NaN kept (rolling windows, coverage).
    empty_value
        Value for an (era, sensor) with no valid value (NaN for every feature but coverage).
    high_cost
        tsfresh's ``high_comp_cost``: in the comprehensive profile only (O(n²) per segment).
    """

    name: str
    func: CalculatorFunc
    params: tuple[Mapping[str, Any], ...]
    tsfresh: bool
    minimal: bool
    input: Input
    empty_value: float = math.nan
    doc: str = field(default="", compare=False)
    high_cost: bool = False

    @property
    def profiles(self) -> frozenset[str]:
        """Profiles whose default grid includes every default parameter set of this calculator."""
        out = {"comprehensive"}
        if not self.high_cost:
            out.add("efficient")
        if self.minimal:
            out.add("minimal")
        return frozenset(out)

    def specs(self) -> list[FeatureSpec]:
        """The default features of this calculator (one per parameter set)."""
        return [FeatureSpec(self.name, dict(p)) for p in self.params]


_REGISTRY: dict[str, Calculator] = {}


def feature(
    name: str,
    *,
    params: Iterable[Mapping[str, Any]] | None = None,
    tsfresh: bool,
    minimal: bool = False,
    input: Input = "values",
    empty_value: float = math.nan,
    high_cost: bool = False,
) -> Callable[[CalculatorFunc], CalculatorFunc]:
    """Register a calculator under ``name`` (decorator).

    Parameters
    ----------
    name
        Calculator name; must be unique and contain no ``"__"``.
    params
        Default parameter grid; ``None`` for a calculator without parameters.
    tsfresh
        Whether the values are tsfresh's (the tests compare every such calculator to tsfresh).
    minimal
        Whether the calculator belongs to the ``minimal`` profile.
    input
        ``"values"`` (NaN dropped) or ``"grid"`` (regular grid, NaN kept).
    empty_value
        Value when an (era, sensor) has no valid value.
    high_cost
        Whether it is in tsfresh's comprehensive profile only (``high_comp_cost``).
    """
    if "__" in name:
        raise ConfigError(f"calculator name {name!r} must not contain '__'")

    def decorate(func: CalculatorFunc) -> CalculatorFunc:
        if name in _REGISTRY:
            raise ConfigError(f"calculator {name!r} registered twice")
        grid = tuple(dict(p) for p in params) if params is not None else ({},)
        _REGISTRY[name] = Calculator(
            name=name,
            func=func,
            params=grid,
            tsfresh=tsfresh,
            minimal=minimal,
            input=input,
            empty_value=empty_value,
            doc=(func.__doc__ or "").strip(),
            high_cost=high_cost,
        )
        return func

    return decorate


def feature_registry() -> dict[str, Calculator]:
    """All registered calculators by name, in registration order (the feature order).

    The registry is filled by importing the calculator modules, which
    :mod:`eraflow.stages.features.catalog` does, in a fixed order, when the package is imported
    (importing any ``eraflow.stages.features`` module imports the package first).
    """
    return dict(_REGISTRY)


def get_calculator(name: str) -> Calculator:
    """Return the calculator called ``name`` or raise ConfigError naming the known ones."""
    reg = feature_registry()
    if name not in reg:
        raise ConfigError(f"unknown feature calculator {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


def _format_value(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: a calculator and one parameter set; ``name`` is the reversible name."""

    calculator: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Feature name as tsfresh writes it after ``<sensor>__`` (params sorted by name)."""
        if not self.params:
            return self.calculator
        parts = [f"{k}_{_format_value(self.params[k])}" for k in sorted(self.params)]
        return "__".join([self.calculator, *parts])

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and other.name == self.name


def parse_feature_name(name: str) -> FeatureSpec:
    """Parse a feature name (without the sensor prefix) back into a :class:`FeatureSpec`.

    The inverse of :attr:`FeatureSpec.name`; values are read as Python literals
    (:func:`~eraflow.common.literals.read_literal`) as tsfresh's ``get_config_from_string``
    does (``nan``/``inf`` spelled out are accepted).

    Raises
    ------
    ConfigError
        When the calculator is unknown or a parameter part is malformed.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"feature name must be a non-empty string, got {name!r}")
    calc, *parts = name.split("__")
    get_calculator(calc)
    params: dict[str, Any] = {}
    for part in parts:
        if "_" not in part:
            raise ConfigError(f"malformed parameter {part!r} in feature name {name!r}")
        key, raw = part.rsplit("_", 1)
        low = raw.lower()
        if low in ("nan", "inf", "-inf"):
            params[key] = float(low)
            continue
        try:
            params[key] = read_literal(raw)
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(
                f"cannot read value {raw!r} of parameter {key!r} in feature name {name!r}"
            ) from exc
    return FeatureSpec(calc, params)


# The seed set: a fixed contract (issue 4), with tsfresh names where tsfresh has the feature.
_ROLLING_SEED_WINDOWS = ("30min", "2h")
_ROLLING_AGGS = ("mean", "std", "min", "max")


def _seed_names() -> list[str]:
    names = [
        "mean",
        "standard_deviation",
        "minimum",
        "maximum",
        "quantile__q_0.25",
        "quantile__q_0.5",
        "quantile__q_0.75",
    ]
    for stat in ("mean", "std", "min", "max"):
        for window in _ROLLING_SEED_WINDOWS:
            for agg in _ROLLING_AGGS:
                names.append(f'rolling_{stat}__agg_"{agg}"__window_"{window}"')
    names += ["mean_change", "diff_std", "coverage", "measured_values"]
    return names


SEED_FEATURES: tuple[str, ...] = tuple(_seed_names())


def profile_specs(profile: str) -> list[FeatureSpec]:
    """Features of a profile, discovered from the registry.

    - ``"minimal"``: default grids of calculators flagged ``minimal`` (tsfresh's minimal set,
      plus coverage and measured_values);
    - ``"seeds"``: :data:`SEED_FEATURES`;
    - ``"efficient"``: default grids of every calculator but tsfresh's ``high_comp_cost``
      ones, plus the seeds;
    - ``"comprehensive"``: every calculator's default grid, plus the seeds.
    """
    reg = feature_registry()
    if profile == "seeds":
        return [parse_feature_name(n) for n in SEED_FEATURES]
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; use one of {PROFILES} or a list of names")
    specs: list[FeatureSpec] = []
    for calc in reg.values():
        if profile in calc.profiles:
            specs.extend(calc.specs())
    if profile in ("efficient", "comprehensive"):
        specs.extend(parse_feature_name(n) for n in SEED_FEATURES)
    return _dedupe(specs)


def _dedupe(specs: Iterable[FeatureSpec]) -> list[FeatureSpec]:
    seen: set[str] = set()
    out = []
    for s in specs:
        if s.name not in seen:
            seen.add(s.name)
            out.append(s)
    return out


def resolve_features(features: str | Sequence[str | FeatureSpec]) -> list[FeatureSpec]:
    """Turn a profile name or a list of feature names/specs into validated specs (deduplicated)."""
    if isinstance(features, str):
        return profile_specs(features)
    specs = []
    for f in features:
        spec = f if isinstance(f, FeatureSpec) else parse_feature_name(f)
        get_calculator(spec.calculator)
        specs.append(spec)
    if not specs:
        raise ConfigError("the feature list is empty")
    return _dedupe(specs)
