"""Plan feature work: estimate each era batch's cost, route it to GPU or CPU, balance workers.

The planner is pure (no Prefect, no I/O): given era batches, the eras table, the sensors each
entity is featurised on, the catalogue and :class:`PlannerSettings`, it returns a :class:`Plan`
whose :meth:`Plan.to_frame` is the table artifact the planner task publishes.

Costs are in *row-sensor-weight units*: ``rows × Σ_sensors profile_weight``. They are relative,
not seconds: only their ratios matter, for balancing and for the GPU threshold.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eraflow.catalogue import Catalogue
from eraflow.catalogue.catalogue import Profile
from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.batches import EraBatch

Device = Literal["gpu", "cpu"]

PROFILES: tuple[str, ...] = get_args(Profile)
DEFAULT_PROFILE_WEIGHTS: dict[str, float] = {
    "minimal": 1.0,
    "efficient": 20.0,
    "comprehensive": 60.0,
}
"""Relative cost of one grid row of one sensor under each tsfresh profile.

Roughly the ratio of calculator work per value: ``minimal`` is a handful of O(n) statistics,
``efficient`` adds FFT, autocorrelation and entropy calculators, ``comprehensive`` adds the
high-cost ones (sample entropy, approximate entropy). Measure on your hardware and override.
"""

PLAN_COLUMNS = ["label", "entity", "level", "eras", "rows", "cost", "device", "worker", "reason"]


class PlannerSettings(BaseModel):
    """How the planner prices, routes and packs era batches (keyword-only, validated).

    Construction raises :class:`~eraflow.common.errors.ConfigError` naming the offending
    fields, so a bad flow parameter fails before any work is scheduled.

    Parameters
    ----------
    profile_weights
        Relative cost per row × sensor of each tsfresh profile; a partial mapping overrides
        only the profiles it names (see :data:`DEFAULT_PROFILE_WEIGHTS`). Must be > 0.
    gpu_available
        Whether a GPU pool exists. ``False`` (the default: the embedded run on any host) routes
        every batch to the CPU pool.
    gpu_workers, cpu_workers
        Workers in each pool (GPU workers: one per GPU). ``gpu_workers`` must be >= 1 when
        ``gpu_available``.
    gpu_min_cost
        Batches cheaper than this stay on CPU: for small batches the kernel launches and the
        host-device transfers cost more than the GPU saves. The default, ``1e6``, is about one
        week of 5-minute rows (2016) × 25 sensors under the ``efficient`` profile (weight 20).
    gpu_min_share
        Share of a batch's cost that must come from GPU-suitable sensors (catalogue ``gpu``)
        for it to go to the GPU; below it the GPU would mostly wait on CPU fallbacks.
    max_batch_cost
        Batches above this are split into consecutive runs of whole eras (balanced by rows), so
        one huge batch does not dominate the makespan. ``None``: never split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_PROFILE_WEIGHTS))
    gpu_available: bool = False
    gpu_workers: int = Field(default=1, ge=0)
    cpu_workers: int = Field(default=2, ge=1)
    gpu_min_cost: float = Field(default=1e6, ge=0, allow_inf_nan=False)
    gpu_min_share: float = Field(default=0.5, ge=0, le=1)
    max_batch_cost: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid planner settings: {problems}") from exc

    @classmethod
    def build(cls, **values: Any) -> PlannerSettings:
        """Validate ``values`` (same as the constructor; named like ``PipelineConfig.build``)."""
        return cls(**values)

    @field_validator("profile_weights", mode="after")
    @classmethod
    def _merge_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PROFILES))
        if unknown:
            raise ValueError(
                f"unknown profile(s) {', '.join(map(repr, unknown))}; known: {', '.join(PROFILES)}"
            )
        bad = {k: v for k, v in value.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"weights must be finite and > 0, got {bad}")
        return DEFAULT_PROFILE_WEIGHTS | value

    @model_validator(mode="after")
    def _gpu_pool(self) -> PlannerSettings:
        if self.gpu_available and self.gpu_workers < 1:
            raise ValueError("gpu_available needs gpu_workers >= 1 (or set gpu_available=False)")
        return self


@dataclass(frozen=True)
class Assignment:
    """One batch's place in the plan: its device pool, worker index, cost and why."""

    batch: EraBatch
    device: Device
    worker: int
    cost: float
    reason: str


@dataclass(frozen=True)
class PoolLoad:
    """A device pool's packing: per-worker loads, makespan and the LPT lower bound.

    ``lower_bound = max(largest cost, total / workers)`` bounds the optimal makespan from below,
    so ``makespan / lower_bound`` is an upper bound on how far the packing is from optimal.
    """

    device: Device
    workers: int
    loads: tuple[float, ...]
    makespan: float
    lower_bound: float


@dataclass(frozen=True)
class Plan:
    """The planner's decisions, in packing order (GPU pool first, then CPU; cost descending)."""

    assignments: list[Assignment]
    pools: dict[Device, PoolLoad] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per assignment (columns :data:`PLAN_COLUMNS`), by device, worker, cost.

        This is the table artifact's content: readable labels, no DataFrames in the plan itself.
        """
        ordered = sorted(self.assignments, key=lambda a: (a.device != "gpu", a.worker))
        rows = [
            {
                "label": a.batch.label,
                "entity": a.batch.entity,
                "level": a.batch.level,
                "eras": a.batch.eras,
                "rows": a.batch.rows,
                "cost": a.cost,
                "device": a.device,
                "worker": a.worker,
                "reason": a.reason,
            }
            for a in ordered
        ]
        return pd.DataFrame(rows, columns=PLAN_COLUMNS)

    def by_worker(self) -> dict[tuple[Device, int], list[Assignment]]:
        """Assignments per ``(device, worker)``, heaviest first; every worker of a pool appears.

        This is what dispatch maps over: one worker's batches run in sequence on it.
        """
        out: dict[tuple[Device, int], list[Assignment]] = {}
        for device, pool in self.pools.items():
            for worker in range(pool.workers):
                out[(device, worker)] = []
        for a in self.assignments:
            out.setdefault((a.device, a.worker), []).append(a)
        return out


def _unique(sensors: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(sensors))


def sensor_weight(sensor: str, *, catalogue: Catalogue, settings: PlannerSettings) -> float:
    """The per-row weight of one sensor: its catalogue profile's weight."""
    return settings.profile_weights[catalogue.get(sensor).tsfresh_profile]


def cost_per_row(
    sensors: Iterable[str], *, catalogue: Catalogue, settings: PlannerSettings
) -> float:
    """``Σ profile_weight`` over the distinct sensors (a sensor listed twice is computed once)."""
    return sum(sensor_weight(s, catalogue=catalogue, settings=settings) for s in _unique(sensors))


def estimate_cost(
    batch: EraBatch, sensors: Iterable[str], *, catalogue: Catalogue, settings: PlannerSettings
) -> float:
    """Relative cost of featurising ``batch`` on ``sensors``: ``rows × Σ profile_weight``.

    Feature calculators are (close to) linear in the values they read, and every sensor is
    featurised over every grid row of the batch, so work scales with rows × sensors, weighted
    by how many calculators the sensor's profile runs. Uncatalogued sensors get the catalogue's
    default spec (``minimal``).

    Examples
    --------
    1000 rows, one ``minimal`` and one ``efficient`` sensor with the default weights:
    ``1000 × (1 + 20) = 21000``.
    """
    return batch.rows * cost_per_row(sensors, catalogue=catalogue, settings=settings)


def gpu_share(sensors: Iterable[str], *, catalogue: Catalogue, settings: PlannerSettings) -> float:
    """Share of the per-row cost from GPU-suitable sensors (0 when there are no sensors)."""
    names = _unique(sensors)
    total = cost_per_row(names, catalogue=catalogue, settings=settings)
    if total == 0:
        return 0.0
    on_gpu = sum(
        sensor_weight(s, catalogue=catalogue, settings=settings)
        for s in names
        if catalogue.get(s).gpu
    )
    return on_gpu / total


def route(
    cost: float, share: float, *, settings: PlannerSettings, cpu_only: Sequence[str] = ()
) -> tuple[Device, str]:
    """GPU or CPU for one batch, with the reason (for the plan table).

    GPU only when a GPU pool exists, the batch is at least ``gpu_min_cost`` (cheaper ones lose
    more to launch and transfer overhead than they gain) and at least ``gpu_min_share`` of its
    cost is on GPU-suitable sensors. ``cpu_only`` (the non-suitable sensors) only feeds the
    reason.
    """
    if not settings.gpu_available:
        return "cpu", "no GPU pool (gpu_available=False)"
    if cost < settings.gpu_min_cost:
        return "cpu", (
            f"cost {cost:.6g} < gpu_min_cost {settings.gpu_min_cost:.6g}: "
            "GPU overhead would dominate"
        )
    if share < settings.gpu_min_share:
        names = f" (not GPU-suitable: {', '.join(cpu_only)})" if cpu_only else ""
        return "cpu", (
            f"GPU-suitable share {share:.2f} < gpu_min_share {settings.gpu_min_share:.2f}{names}"
        )
    return "gpu", (
        f"cost {cost:.6g} >= gpu_min_cost {settings.gpu_min_cost:.6g}, "
        f"GPU-suitable share {share:.2f}"
    )


def lpt_schedule(costs: Sequence[float], workers: int) -> list[int]:
    """Longest-processing-time packing: the worker index of each job, in input order.

    Jobs are taken by cost descending (equal costs in input order, so callers fix ties by
    pre-sorting) and each goes to the currently least-loaded worker (lowest index on ties).
    Graham's bound: makespan <= (4/3 - 1/(3m)) × optimum, and <= total/m + (1 - 1/m) × max cost.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    order = sorted(range(len(costs)), key=lambda i: -costs[i])
    heap = [(0.0, w) for w in range(workers)]
    out = [0] * len(costs)
    for i in order:
        load, worker = heapq.heappop(heap)
        out[i] = worker
        heapq.heappush(heap, (load + costs[i], worker))
    return out


def pool_load(
    device: Device, costs: Sequence[float], schedule: Sequence[int], workers: int
) -> PoolLoad:
    """Per-worker loads, makespan and lower bound ``max(max cost, total / workers)``."""
    loads = [0.0] * workers
    for cost, worker in zip(costs, schedule, strict=True):
        loads[worker] += cost
    lower = max(max(costs, default=0.0), sum(costs) / workers)
    return PoolLoad(
        device=device,
        workers=workers,
        loads=tuple(loads),
        makespan=max(loads, default=0.0),
        lower_bound=lower,
    )


def _batch_eras(batch: EraBatch, eras: pd.DataFrame) -> pd.DataFrame:
    """The eras table rows of ``batch``, in time order; they must agree with the batch."""
    mask = (
        (eras["entity"] == batch.entity)
        & (eras["level"] == batch.level)
        & (eras["era_id"] >= batch.first_era_id)
        & (eras["era_id"] <= batch.last_era_id)
    )
    part = eras.loc[mask].sort_values("start", kind="stable")
    if len(part) != batch.eras or int(part["rows"].sum()) != batch.rows:
        raise DataError(
            f"eras table has {len(part)} eras / {int(part['rows'].sum())} rows for "
            f"batch {batch.label} (ids {batch.first_era_id}..{batch.last_era_id}), "
            f"which says {batch.eras} / {batch.rows}: rebuild the batches from "
            "this eras table"
        )
    return part


def _balanced_cuts(rows: Sequence[int], cap: int) -> list[int]:
    """End indices of the fewest consecutive parts of ``rows`` with <= ``cap`` rows each.

    Balanced: first the smallest largest part that keeps that count, then each cut as near an
    even share of the remaining rows as that allows. Every element must be <= ``cap``.
    """
    prefix = [0]
    for r in rows:
        prefix.append(prefix[-1] + r)
    n = len(rows)

    def reach(i: int, limit: int) -> int:
        # furthest end e > i with sum(rows[i:e]) <= limit
        return bisect.bisect_right(prefix, prefix[i] + limit) - 1

    def parts_needed(limit: int) -> list[int]:
        # fewest parts for each suffix rows[i:], greedy from the left of the suffix (optimal)
        need = [0] * (n + 1)
        for i in range(n - 1, -1, -1):
            need[i] = 1 + need[reach(i, limit)]
        return need

    k = parts_needed(cap)[0]
    lo, hi = max(max(rows, default=0), -(-prefix[-1] // k)), cap
    while lo < hi:  # the smallest maximum part that still needs only k parts
        mid = (lo + hi) // 2
        if parts_needed(mid)[0] <= k:
            hi = mid
        else:
            lo = mid + 1
    need = parts_needed(lo)
    cuts: list[int] = []
    i, left = 0, k
    while i < n:
        target = (prefix[-1] - prefix[i]) / left
        best = -1
        for end in range(i + 1, reach(i, lo) + 1):
            if need[end] <= left - 1 and (
                best < 0
                or abs(prefix[end] - prefix[i] - target) < abs(prefix[best] - prefix[i] - target)
            ):
                best = end
        cuts.append(best)
        i, left = best, left - 1
    return cuts


def _sub_batch(batch: EraBatch, part: pd.DataFrame) -> EraBatch:
    return EraBatch(
        entity=batch.entity,
        level=batch.level,
        start=part["start"].iloc[0],
        end=part["end"].iloc[-1],
        eras=len(part),
        rows=int(part["rows"].sum()),
        first_era_id=int(part["era_id"].iloc[0]),
        last_era_id=int(part["era_id"].iloc[-1]),
        stage=batch.stage,
    )


def split_batch(
    batch: EraBatch, eras: pd.DataFrame, *, max_cost: float, cost_per_row: float
) -> list[EraBatch]:
    """Split ``batch`` into consecutive runs of whole eras costing <= ``max_cost`` each.

    Eras are never cut (features are per era), so an era that alone costs more than
    ``max_cost`` becomes a sub-batch of its own. Between such eras, the fewest sub-batches are
    used, balanced by rows (smallest possible largest sub-batch). A batch within ``max_cost``
    comes back unchanged.

    Parameters
    ----------
    batch
        The batch to split.
    eras
        The eras table (entity, level, era_id, start, end, rows); the batch's eras are those
        of its entity and level with ids in ``first_era_id..last_era_id``.
    max_cost
        Cost ceiling per sub-batch (row-sensor-weight units, > 0).
    cost_per_row
        ``Σ profile_weight`` of the batch's sensors (:func:`cost_per_row`).

    Returns
    -------
    list[EraBatch]
        Sub-batches in time order; their era-id ranges tile the batch's without overlap.

    Raises
    ------
    DataError
        The eras table does not hold exactly the batch's eras and rows.
    """
    if not (max_cost > 0 and math.isfinite(max_cost)):
        raise ConfigError(f"max_cost must be finite and > 0, got {max_cost}")
    if cost_per_row < 0:
        raise ConfigError(f"cost_per_row must be >= 0, got {cost_per_row}")
    if batch.rows * cost_per_row <= max_cost:
        return [batch]
    part = _batch_eras(batch, eras)
    rows = [int(r) for r in part["rows"]]
    cap = math.floor(max_cost / cost_per_row)  # most rows whose cost fits, float-safe below
    while cap > 0 and cap * cost_per_row > max_cost:
        cap -= 1
    while (cap + 1) * cost_per_row <= max_cost:
        cap += 1
    out: list[EraBatch] = []
    segment = 0  # first era of the current run of eras that fit on their own
    for i in range(len(rows) + 1):  # an oversized era, or the end, closes the run
        if i < len(rows) and rows[i] <= cap:
            continue
        begin = segment
        for end in _balanced_cuts(rows[segment:i], cap) if i > segment else []:
            out.append(_sub_batch(batch, part.iloc[begin : segment + end]))
            begin = segment + end
        if i < len(rows):
            out.append(_sub_batch(batch, part.iloc[i : i + 1]))
        segment = i + 1
    return out


def _order_key(batch: EraBatch) -> tuple[str, str, str, pd.Timestamp, int]:
    return (batch.label, batch.entity, batch.level, batch.start, batch.first_era_id)


def plan_batches(
    batches: Iterable[EraBatch],
    eras: pd.DataFrame | None,
    sensors_by_entity: Mapping[str, Sequence[str]],
    *,
    catalogue: Catalogue,
    settings: PlannerSettings,
) -> Plan:
    """Price, split, route and pack era batches into a deterministic :class:`Plan`.

    Each batch is priced with :func:`estimate_cost` on its entity's sensors, split when above
    ``settings.max_batch_cost`` (:func:`split_batch`), routed with :func:`route`, then each pool
    is packed with :func:`lpt_schedule`. The result does not depend on the order of
    ``batches``: they are first sorted by (label, entity, level, start, first era id), which
    also breaks LPT's ties between equal costs.

    Parameters
    ----------
    batches
        Era batches, e.g. from :func:`eraflow.stages.batches.batches_from_eras`.
    eras
        The eras table the batches came from; needed only when a batch must be split.
    sensors_by_entity
        The sensors featurised for each entity.
    catalogue, settings
        Sensor profiles and GPU suitability; planner parameters.

    Raises
    ------
    ConfigError
        An entity has no sensor list, or a batch must be split but ``eras`` is ``None``.
    """
    priced: list[tuple[EraBatch, float, float, list[str]]] = []
    for batch in sorted(batches, key=_order_key):
        if batch.entity not in sensors_by_entity:
            raise ConfigError(
                f"no sensor list for entity {batch.entity!r}: add it to sensors_by_entity"
            )
        sensors = _unique(sensors_by_entity[batch.entity])
        per_row = cost_per_row(sensors, catalogue=catalogue, settings=settings)
        share = gpu_share(sensors, catalogue=catalogue, settings=settings)
        cpu_only = [s for s in sensors if not catalogue.get(s).gpu]
        parts = [batch]
        if settings.max_batch_cost is not None and batch.rows * per_row > settings.max_batch_cost:
            if eras is None:
                raise ConfigError(
                    f"batch {batch.label} costs more than max_batch_cost "
                    f"{settings.max_batch_cost:.6g}: pass the eras table to split "
                    "it, or raise max_batch_cost"
                )
            parts = split_batch(batch, eras, max_cost=settings.max_batch_cost, cost_per_row=per_row)
        priced += [(p, p.rows * per_row, share, cpu_only) for p in parts]
    priced.sort(key=lambda item: _order_key(item[0]))

    routed: dict[Device, list[tuple[EraBatch, float, str]]] = {"gpu": [], "cpu": []}
    for batch, cost, share, cpu_only in priced:
        device, reason = route(cost, share, settings=settings, cpu_only=cpu_only)
        routed[device].append((batch, cost, reason))

    sizes: dict[Device, int] = {"gpu": settings.gpu_workers, "cpu": settings.cpu_workers}
    assignments: list[Assignment] = []
    pools: dict[Device, PoolLoad] = {}
    for device in ("gpu", "cpu"):
        if device == "gpu" and not settings.gpu_available:
            continue
        jobs = routed[device]
        costs = [cost for _, cost, _ in jobs]
        schedule = lpt_schedule(costs, sizes[device])
        pools[device] = pool_load(device, costs, schedule, sizes[device])
        order = sorted(range(len(jobs)), key=lambda i: -costs[i])
        assignments += [
            Assignment(
                batch=jobs[i][0],
                device=device,
                worker=schedule[i],
                cost=costs[i],
                reason=jobs[i][2],
            )
            for i in order
        ]
    return Plan(assignments=assignments, pools=pools)
