"""The planner: costs, splitting, GPU/CPU routing, LPT packing (hand-computed, brute force)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest

from eraflow.catalogue import Catalogue, SensorSpec, load_catalogue
from eraflow.common.errors import ConfigError, DataError
from eraflow.stages.batches import EraBatch, assign_stable_era_ids, batches_from_eras
from eraflow.stages.planner import (
    PLAN_COLUMNS,
    Plan,
    PlannerSettings,
    estimate_cost,
    lpt_schedule,
    plan_batches,
    pool_load,
    split_batch,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")
STEP = pd.Timedelta("5min")
CAT = load_catalogue()


def make_eras(
    rows: list[int], entity: str = "e", level: str = "A", start: pd.Timestamp = T0
) -> pd.DataFrame:
    """Back-to-back eras of the given row counts on a 5-minute grid, with stable ids."""
    bounds = start + STEP * np.concatenate([[0], np.cumsum(rows)])
    frame = pd.DataFrame(
        {
            "entity": entity,
            "level": level,
            "era_id": 0,
            "start": bounds[:-1],
            "end": bounds[1:],
            "rows": rows,
        }
    )
    return assign_stable_era_ids(frame)


def era_ids(batch: EraBatch, eras: pd.DataFrame) -> list[int]:
    mask = (
        (eras["entity"] == batch.entity)
        & (eras["level"] == batch.level)
        & eras["era_id"].between(batch.first_era_id, batch.last_era_id)
    )
    return eras.loc[mask, "era_id"].tolist()


def covered(parts: list[EraBatch], eras: pd.DataFrame) -> list[int]:
    """The era ids the parts cover, in order, repeats kept (so overlaps show)."""
    return list(itertools.chain.from_iterable(era_ids(p, eras) for p in parts))


def one_batch(rows: int, entity: str = "e") -> EraBatch:
    return batches_from_eras(make_eras([rows], entity=entity))[0]


# --- cost -----------------------------------------------------------------------------------


def test_cost_is_rows_times_profile_weights() -> None:
    cat = Catalogue(
        {
            "t": SensorSpec(name="t", tsfresh_profile="efficient"),
            "o": SensorSpec(name="o", tsfresh_profile="minimal"),
            "c": SensorSpec(name="c", tsfresh_profile="comprehensive"),
        }
    )
    batch = one_batch(1000)
    default = PlannerSettings()
    assert estimate_cost(batch, ["t", "o", "c"], catalogue=cat, settings=default) == 81_000
    # a partial override changes only the profile it names
    cheap = PlannerSettings(profile_weights={"efficient": 5})
    assert cheap.profile_weights == {"minimal": 1, "efficient": 5, "comprehensive": 60}
    assert estimate_cost(batch, ["t", "o", "c"], catalogue=cat, settings=cheap) == 66_000
    # a repeated sensor is computed once; an uncatalogued one is priced as 'minimal'
    assert estimate_cost(batch, ["t", "t", "new"], catalogue=cat, settings=default) == 21_000


def test_cost_with_the_packaged_catalogue() -> None:
    # air_temp_c is efficient (20), outside_temp_c and rain minimal (1 each)
    sensors = ["air_temp_c", "outside_temp_c", "rain"]
    assert (
        estimate_cost(one_batch(288), sensors, catalogue=CAT, settings=PlannerSettings())
        == 288 * 22
    )


# --- split_batch ----------------------------------------------------------------------------


def test_split_balances_rows_with_the_fewest_parts() -> None:
    eras = make_eras([100, 100, 100, 100, 1])
    batch = batches_from_eras(eras)[0]
    parts = split_batch(batch, eras, max_cost=300, cost_per_row=1)
    # 2 parts are needed (401 rows, <= 300 each); greedy filling would give 300 + 101
    assert [(p.eras, p.rows) for p in parts] == [(2, 200), (3, 201)]
    ids = eras["era_id"].tolist()
    assert [(p.first_era_id, p.last_era_id) for p in parts] == [(ids[0], ids[1]), (ids[2], ids[4])]
    assert [(p.start, p.end) for p in parts] == [
        (T0, T0 + 200 * STEP),
        (T0 + 200 * STEP, T0 + 401 * STEP),
    ]
    assert all(p.entity == "e" and p.level == "A" for p in parts)


def test_split_uses_the_fewest_parts() -> None:
    eras = make_eras([100] * 5)
    parts = split_batch(batches_from_eras(eras)[0], eras, max_cost=250, cost_per_row=1)
    assert len(parts) == 3 and max(p.rows for p in parts) == 200


def test_split_keeps_an_oversized_era_alone() -> None:
    eras = make_eras([50, 50, 400, 50, 50, 50])
    batch = batches_from_eras(eras)[0]
    parts = split_batch(batch, eras, max_cost=240, cost_per_row=2)  # 120 rows per part
    assert [p.rows for p in parts] == [100, 400, 50, 100]
    assert parts[1].eras == 1 and parts[1].first_era_id == parts[1].last_era_id
    assert covered(parts, eras) == eras["era_id"].tolist()


def test_split_leaves_a_cheap_batch_unchanged() -> None:
    eras = make_eras([100, 100])
    batch = batches_from_eras(eras)[0]
    assert split_batch(batch, eras, max_cost=200, cost_per_row=1) == [batch]
    assert split_batch(batch, eras, max_cost=1, cost_per_row=0) == [batch]


def test_split_rejects_an_eras_table_that_disagrees() -> None:
    eras = make_eras([100, 100, 100])
    batch = batches_from_eras(eras)[0]
    with pytest.raises(DataError, match="rebuild the batches"):
        split_batch(batch, eras.iloc[:2], max_cost=150, cost_per_row=1)


@pytest.mark.parametrize("seed", range(20))
def test_split_tiles_the_batch_within_max_cost(seed: int) -> None:
    rng = random.Random(seed)
    rows = [rng.randint(1, 300) for _ in range(rng.randint(1, 40))]
    eras = make_eras(rows)
    batch = batches_from_eras(eras)[0]
    max_cost = rng.uniform(100, 2000)
    parts = split_batch(batch, eras, max_cost=max_cost, cost_per_row=3)
    assert covered(parts, eras) == eras["era_id"].tolist()
    assert sum(p.rows for p in parts) == batch.rows and sum(p.eras for p in parts) == batch.eras
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    assert all(p.rows * 3 <= max_cost or p.eras == 1 for p in parts)


# --- LPT ------------------------------------------------------------------------------------


def brute_force_makespan(costs: list[float], workers: int) -> float:
    grid = np.array(list(itertools.product(range(workers), repeat=len(costs))))
    loads = np.stack([(grid == w) @ np.array(costs) for w in range(workers)], axis=1)
    return float(loads.max(axis=1).min())


def test_lpt_on_grahams_tight_case() -> None:
    costs = [3.0, 3.0, 2.0, 2.0, 2.0]
    schedule = lpt_schedule(costs, 2)
    assert schedule == [0, 1, 0, 1, 0]
    pool = pool_load("cpu", costs, schedule, 2)
    assert pool.loads == (7.0, 5.0) and pool.lower_bound == 6.0
    assert brute_force_makespan(costs, 2) == 6.0
    assert pool.makespan == pytest.approx((4 / 3 - 1 / 6) * 6.0)  # the bound is attained


def test_lpt_ties_go_to_the_lowest_worker() -> None:
    assert lpt_schedule([5.0, 5.0, 5.0], 2) == [0, 1, 0]
    assert lpt_schedule([], 3) == []


def test_lpt_is_within_grahams_bound_of_the_optimum() -> None:
    rng = random.Random(7)
    for _ in range(150):
        workers = rng.choice([2, 3])
        costs = [float(rng.randint(1, 50)) for _ in range(rng.randint(1, 8))]
        pool = pool_load("cpu", costs, lpt_schedule(costs, workers), workers)
        best = brute_force_makespan(costs, workers)
        assert pool.lower_bound <= best <= pool.makespan
        assert pool.makespan <= (4 / 3 - 1 / (3 * workers)) * best + 1e-9


def test_lpt_is_within_the_list_scheduling_bound() -> None:
    rng = random.Random(11)
    for _ in range(200):
        workers = rng.randint(1, 8)
        costs = [rng.uniform(0.1, 100) for _ in range(rng.randint(0, 60))]
        pool = pool_load("cpu", costs, lpt_schedule(costs, workers), workers)
        largest = max(costs, default=0.0)
        assert pool.makespan <= sum(costs) / workers + (1 - 1 / workers) * largest + 1e-9
        assert pool.makespan <= pool.lower_bound + largest + 1e-9
        assert sum(pool.loads) == pytest.approx(sum(costs))


# --- routing --------------------------------------------------------------------------------


def gpu_settings(**values: object) -> PlannerSettings:
    return PlannerSettings(**({"gpu_available": True, "gpu_workers": 1, "cpu_workers": 2} | values))


def plan_one(batch: EraBatch, sensors: list[str], settings: PlannerSettings) -> Plan:
    return plan_batches([batch], None, {batch.entity: sensors}, catalogue=CAT, settings=settings)


def test_gpu_threshold_is_inclusive() -> None:
    batch = one_batch(1000)  # air_temp_c (efficient): cost 20_000
    at = plan_one(batch, ["air_temp_c"], gpu_settings(gpu_min_cost=20_000)).assignments[0]
    assert (at.device, at.cost) == ("gpu", 20_000)
    below = plan_one(batch, ["air_temp_c"], gpu_settings(gpu_min_cost=20_000.001)).assignments[0]
    assert below.device == "cpu" and "< gpu_min_cost" in below.reason


def test_no_gpu_pool_puts_everything_on_cpu() -> None:
    eras = pd.concat([make_eras([5000, 7000], entity=e) for e in ("a", "b")])
    batches = batches_from_eras(eras)
    plan = plan_batches(
        batches,
        eras,
        {"a": ["air_temp_c"], "b": ["co2_ppm"]},
        catalogue=CAT,
        settings=PlannerSettings(gpu_min_cost=0, cpu_workers=2),
    )
    assert {a.device for a in plan.assignments} == {"cpu"}
    assert all(a.reason == "no GPU pool (gpu_available=False)" for a in plan.assignments)
    assert set(plan.pools) == {"cpu"}


def test_sensors_not_suited_to_gpu_keep_a_batch_on_cpu() -> None:
    batch = one_batch(1000)
    rain_only = plan_one(batch, ["rain"], gpu_settings(gpu_min_cost=0)).assignments[0]
    assert rain_only.device == "cpu" and "not GPU-suitable: rain" in rain_only.reason
    # rain and outside_temp_c weigh 1 each: the GPU-suitable share is exactly 0.5
    half = ["rain", "outside_temp_c"]
    assert (
        plan_one(batch, half, gpu_settings(gpu_min_cost=0, gpu_min_share=0.5)).assignments[0].device
        == "gpu"
    )
    assert (
        plan_one(batch, half, gpu_settings(gpu_min_cost=0, gpu_min_share=0.6)).assignments[0].device
        == "cpu"
    )


# --- the whole plan -------------------------------------------------------------------------


def random_eras(seed: int) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    rng = random.Random(seed)
    frames = [
        make_eras(
            [rng.randint(20, 600) for _ in range(rng.randint(1, 25))], entity=entity, level=level
        )
        for entity in ("north", "south", "west")
        for level in ("A", "B", "C")
    ]
    sensors = {
        "north": ["air_temp_c", "co2_ppm", "rain"],
        "south": ["outside_temp_c", "rain"],
        "west": CAT.names,
    }
    return pd.concat(frames, ignore_index=True), sensors


@pytest.mark.parametrize("seed", range(5))
def test_every_era_is_assigned_exactly_once(seed: int) -> None:
    eras, sensors = random_eras(seed)
    settings = gpu_settings(
        gpu_workers=2, cpu_workers=3, gpu_min_cost=50_000, max_batch_cost=200_000
    )
    plan = plan_batches(batches_from_eras(eras), eras, sensors, catalogue=CAT, settings=settings)
    assigned = [
        (a.batch.entity, a.batch.level, i) for a in plan.assignments for i in era_ids(a.batch, eras)
    ]
    expected = list(eras[["entity", "level", "era_id"]].itertuples(index=False, name=None))
    assert sorted(assigned) == sorted(expected) and len(set(assigned)) == len(assigned)
    assert len(plan.assignments) > len(batches_from_eras(eras))  # some batches were split
    for a in plan.assignments:
        assert a.cost <= 200_000 or a.batch.eras == 1
    for device, pool in plan.pools.items():
        costs = [a.cost for a in plan.assignments if a.device == device]
        assert pool.makespan <= pool.lower_bound + max(costs, default=0) + 1e-6
        for worker in range(pool.workers):
            load = sum(a.cost for a in plan.by_worker()[(device, worker)])
            assert load == pytest.approx(pool.loads[worker])


def test_plan_is_deterministic_and_independent_of_input_order() -> None:
    eras, sensors = random_eras(3)
    settings = gpu_settings(
        gpu_workers=2, cpu_workers=3, gpu_min_cost=50_000, max_batch_cost=200_000
    )
    batches = batches_from_eras(eras)
    first = plan_batches(batches, eras, sensors, catalogue=CAT, settings=settings)
    shuffled = batches[:]
    random.Random(1).shuffle(shuffled)
    second = plan_batches(shuffled, eras, sensors, catalogue=CAT, settings=settings)
    assert first == second
    pd.testing.assert_frame_equal(first.to_frame(), second.to_frame())


def test_equal_costs_are_packed_in_label_order() -> None:
    eras = pd.concat([make_eras([100], entity=e) for e in ("c", "a", "b")])
    plan = plan_batches(
        batches_from_eras(eras)[::-1],
        eras,
        {e: ["rain"] for e in "abc"},
        catalogue=CAT,
        settings=PlannerSettings(cpu_workers=2),
    )
    assert [(a.batch.entity, a.worker) for a in plan.assignments] == [("a", 0), ("b", 1), ("c", 0)]


def test_plan_table_has_one_row_per_assignment() -> None:
    eras, sensors = random_eras(0)
    settings = gpu_settings(gpu_workers=1, cpu_workers=2, gpu_min_cost=100_000)
    plan = plan_batches(batches_from_eras(eras), eras, sensors, catalogue=CAT, settings=settings)
    table = plan.to_frame()
    assert list(table.columns) == PLAN_COLUMNS and len(table) == len(plan.assignments) == 9
    assert set(table["device"]) == {"gpu", "cpu"}
    assert table["reason"].str.len().gt(0).all()
    assert list(plan.by_worker()) == [("gpu", 0), ("cpu", 0), ("cpu", 1)]
    # GPU rows first, then by worker, heaviest first within a worker
    keys = list(zip(table["device"] == "cpu", table["worker"], -table["cost"], strict=True))
    assert keys == sorted(keys)


def test_plan_needs_sensors_and_eras() -> None:
    eras = make_eras([100, 100])
    batches = batches_from_eras(eras)
    with pytest.raises(ConfigError, match="no sensor list for entity 'e'"):
        plan_batches(batches, eras, {}, catalogue=CAT, settings=PlannerSettings())
    with pytest.raises(ConfigError, match="pass the eras table"):
        plan_batches(
            batches,
            None,
            {"e": ["rain"]},
            catalogue=CAT,
            settings=PlannerSettings(max_batch_cost=150),
        )


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cpu_workers": -1}, "cpu_workers: Input should be greater than or equal to 1"),
        ({"cpu_workers": 0}, "cpu_workers"),
        ({"gpu_workers": -2}, "gpu_workers: Input should be greater than or equal to 0"),
        ({"gpu_available": True, "gpu_workers": 0}, "gpu_available needs gpu_workers >= 1"),
        ({"profile_weights": {"fast": 2.0}}, "unknown profile.*'fast'.*known: minimal, efficient"),
        ({"profile_weights": {"minimal": 0.0}}, "finite and > 0"),
        ({"gpu_min_cost": -1.0}, "gpu_min_cost"),
        ({"gpu_min_share": 1.5}, "gpu_min_share"),
        ({"max_batch_cost": 0.0}, "max_batch_cost"),
        ({"gpu_min_cots": 5.0}, "gpu_min_cots: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_raise_config_error(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid planner settings: .*{message}"):
        PlannerSettings(**values)
    with pytest.raises(ConfigError):
        PlannerSettings.build(**values)


def test_settings_defaults() -> None:
    s = PlannerSettings()
    assert (s.gpu_available, s.gpu_workers, s.cpu_workers) == (False, 1, 2)  # = the pipeline
    assert (s.gpu_min_cost, s.gpu_min_share, s.max_batch_cost) == (1e6, 0.5, None)
    assert s.profile_weights == {"minimal": 1.0, "efficient": 20.0, "comprehensive": 60.0}
