"""Prefect's share of a run: ``eraflow run`` against the same library calls without Prefect.

Per pair, two fresh child processes over the same range of Knud Jepsen, each into its own
temporary store:

- ``prefect``: the command, ``eraflow run --source knudjepsen ... --store <tmp>`` (its private
  server included: a child of the command, so its CPU counts);
- ``plain``: :func:`plain_run` below, the library calls of the task bodies in the same order
  (ingest, aggregate, gap-fill, eras with their plots, plan, features, selection, report),
  mapped stages on a pool of as many threads as the flow's task runner, and no Prefect import.

The two stores must hold the same tables (eras, features, selection; run ids aside). Printed
per side: wall, user+sys CPU of the child and everything it waited for (``os.wait4``), peak
RSS (the largest process; the tables are compared in another child so that this process
stays small: a child's ``ru_maxrss`` starts at its parent's), and the time from launch to
the first task (Prefect's task-run start times, read from the server's SQLite file; the plain
run's ingest start). Prefect's share is ``(A - B) / A`` for CPU and wall. Pairs alternate which
side goes first; medians and the spread (min-max) are reported: the machine is shared.
The Prefect server's own CPU is reported apart (polled every 0.1 s): pure orchestration, so
its part of the command's CPU is a floor of Prefect's share that the noise of two long runs
(10-20 % between runs of the same side on a busy machine) cannot blur.
``--server shared`` runs the command against one server started before the pairs (as
``eraflow server up`` gives) and adds that server's CPU during each run to the command's.

Usage: ``python benchmarks/bench_prefect_overhead.py [--range month|year] [--pairs N]
[--server private|shared] [--json FILE]`` (default: month, 3 pairs, private; JSON to
``benchmarks/results/prefect_overhead.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "greenhouse" / "knudjepsen"
RANGES = {
    "month": ("2015-10-01", "2015-11-01"),
    "year": ("2015-09-07", "2016-09-07"),
}
ERAFLOW = str(Path(sys.executable).parent / "eraflow")
COMPARED = ("eras", "features", "selection")
#: Columns that name the run or when it happened, not what it computed.
RUN_COLUMNS = {"run_id", "computed_at", "created_at", "updated_at", "written_at"}


# --------------------------------------------------------------------------- plain child
def plain_run(params: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's library calls in this process, as the tasks make them (no Prefect)."""
    launched = float(params.pop("launched"))
    from eraflow.common.memory import limit_heaps
    from eraflow.common.threads import one_blas_thread

    limit_heaps()  # what the command does first
    one_blas_thread()
    import pandas as pd

    from eraflow.catalogue import load_catalogue
    from eraflow.common.grid import grid_step
    from eraflow.common.memory import release_memory
    from eraflow.config import PipelineConfig
    from eraflow.runs.feature_store import engine_config_hash, stage_hashes, write_era_features
    from eraflow.runs.grid_update import recount_coverage, write_entity_range
    from eraflow.runs.history import update_entity_eras
    from eraflow.runs.preflight import check_config, check_entities
    from eraflow.runs.report import (
        coverage_by_sensor,
        eras_by_level,
        feature_counts,
        greenhouse_days,
        selection_counts,
        write_report,
    )
    from eraflow.runs.scope import SelectionSettings, scope_name, select_scope
    from eraflow.runs.summary import RunSummary, SelectionCount, computed_eras, summary_folder
    from eraflow.stages.aggregate import aggregate
    from eraflow.stages.batches import batches_for_todo
    from eraflow.stages.eras import plot_eras
    from eraflow.stages.features import concat_feature_rows
    from eraflow.stages.greenhouse import greenhouse_features
    from eraflow.stages.ingest import load_mapping, read_mapping
    from eraflow.stages.planner import PlannerSettings, plan_batches
    from eraflow.stages.sensor_profiles import compute_profiled_features, engine_sensor_profiles
    from eraflow.store import TABLES, Key, ParquetStore, Range
    from eraflow.store.grid import read_entity_grid
    from eraflow.store.names import entity_slug

    config = PipelineConfig.build(**params)
    run_id = "plain"
    opts = config.orchestration
    threads = max(opts.cpu_workers, 2)  # the flow's ThreadPoolTaskRunner
    step = grid_step(config.grid.freq)
    catalogue = load_catalogue(config.source.catalogue)

    def store() -> ParquetStore:
        return ParquetStore(config.store.path, lock_timeout=config.store.lock_timeout)

    clock: dict[str, float] = {}
    began = time.perf_counter()
    first_task = time.time()

    def lap(stage: str) -> None:
        nonlocal began
        now = time.perf_counter()
        clock[stage] = round(now - began, 2)
        began = now

    check_config(config)
    with store():
        pass  # check_resources: the store opens
    src = config.source
    first_task = time.time()
    results = read_mapping(
        load_mapping(src.name),
        src.data_root or ".",
        start=src.start,
        end=src.end,
        sources=src.sources,
        reuse=src.reuse,
    )
    frames = [r.frame for r in results]
    check_entities(src.entities, sorted({str(e) for f in frames for e in f["entity"].unique()}))
    lap("ingest")
    aggregated = aggregate(frames, catalogue, freq=config.grid.freq, start=src.start, end=src.end)
    release_memory(aggregated.grid.size)
    del frames
    lap("aggregate")
    grid = aggregated.grid
    start_utc = src.start or grid["time"].min()
    end_utc = src.end or grid["time"].max() + step
    inputs = aggregated.report.per_sensor
    mapped = {str(e): part["sensor"].astype(str).tolist() for e, part in inputs.groupby("entity")}
    writes = []
    with store() as opened:
        for entity in sorted(grid["entity"].astype(str).unique()):
            write = write_entity_range(
                opened,
                grid,
                entity=entity,
                catalogue=catalogue,
                freq=config.grid.freq,
                start=start_utc,
                end=end_utc,
                mapped=mapped.get(entity, ()),
            )
            writes.append(write)
            recount_coverage(
                opened, entity, freq=config.grid.freq, start=write.start, end=write.end
            )
    release_memory(grid.size)
    del grid, aggregated
    entities = [w.entity for w in writes]
    lap("gap-fill + store")

    features = config.features
    eras_opts = config.eras
    folder = summary_folder(config.store.path) / run_id
    folder.mkdir(parents=True, exist_ok=True)

    def segment(entity: str) -> list[Any]:
        with store() as opened:
            update = update_entity_eras(
                opened,
                entity,
                config=eras_opts.detector(),
                step=step,
                stages=stage_hashes(features, config.grid.freq, config.source.catalogue),
                start=start_utc,
                horizon=pd.Timedelta(eras_opts.horizon) if eras_opts.horizon else None,
                penalty_rule=eras_opts.penalty_rule,
                draw_penalty_path=eras_opts.penalty_path and config.store.report,
            )
        if config.store.report:
            eras = update.eras
            plot_eras(
                update.values,
                eras[eras["start"] >= update.values.index.min()],
                path=folder / f"eras-{entity_slug(entity)}.png",
                units={n: catalogue.get(n).unit for n in update.values.columns},
            )
        release_memory()
        return batches_for_todo(update.eras, update.todo, max_rows=features.max_batch_rows)

    with ThreadPoolExecutor(threads) as pool:
        batches = [b for found in pool.map(segment, entities) for b in found]
    lap("eras")

    live = {w.entity: list(w.sensors) for w in writes}
    plan = plan_batches(
        batches,
        None,
        live,
        catalogue=catalogue,
        settings=PlannerSettings(
            gpu_available=False,
            gpu_workers=1,
            cpu_workers=opts.cpu_workers,
            gpu_min_cost=opts.gpu_min_cost,
            max_batch_cost=opts.max_batch_cost,
        ),
    )
    engine_hash = engine_config_hash(features, config.grid.freq, config.source.catalogue)

    def compute(batch: Any) -> int:
        if batch.stage != "engine":
            raise SystemExit(f"plain run: stage {batch.stage} is not mirrored here")
        with store() as opened:
            eras = opened.read(
                "eras",
                Key(
                    batch.entity,
                    {
                        "level": batch.level,
                        "era_id": Range(batch.first_era_id, batch.last_era_id + 1),
                    },
                ),
            )
            values, fill_mask = read_entity_grid(
                opened, batch.entity, step=step, start=eras["start"].min(), end=eras["end"].max()
            )
            sensors = [s for s in values.columns if values[s].notna().any()]
            profiles = engine_sensor_profiles(features.profile, sensors, catalogue)
            rows = compute_profiled_features(
                values,
                fill_mask,
                eras,
                entity=batch.entity,
                profiles=profiles,
                device="cpu",
                feature_values=features.values,
                native_intervals={s: catalogue.get(s).native_interval for s in sensors},
            )
            greenhouse = greenhouse_features(
                values,
                fill_mask,
                eras,
                entity=batch.entity,
                constants=catalogue.greenhouse,
                step=step,
            )
            written = write_era_features(
                opened,
                concat_feature_rows([rows, greenhouse]),
                entity=batch.entity,
                level=batch.level,
                stage="engine",
                fingerprints=dict(
                    zip(eras["era_id"].astype(int), eras["fingerprint"], strict=True)
                ),
                config_hash=engine_hash,
                run_id=run_id,
            )
        release_memory()
        return int(written.values)

    ordered = [a.batch for a in plan.assignments]
    feature_rows = 0
    if features.compute and ordered:
        with ThreadPoolExecutor(threads) as pool:
            feature_rows = sum(pool.map(compute, ordered))
    lap("features")

    sel = config.selection
    scope = sel.scope or scope_name(entities)
    selection: dict[str, SelectionCount] = {}
    if sel.run:
        settings = SelectionSettings(
            correlation_threshold=sel.correlation_threshold,
            fdr_level=sel.fdr_level,
            target_sensor=sel.target_sensor,
            target_how=sel.target_how,
            device="cpu" if features.device == "auto" else features.device,
        )
        for level in [lv for lv in ["A", "B", "C"] if lv in sel.levels]:
            with store() as opened:
                counts = select_scope(
                    opened, scope, entities, level, settings=settings, step=step, run_id=run_id
                )
            release_memory()
            selection[level] = SelectionCount(**counts)
    lap("selection")

    summary = RunSummary(
        kind="pipeline",
        run_id=run_id,
        start=start_utc,
        end=end_utc,
        entities=entities,
        grid_rows=sum(w.rows for w in writes),
        sensors={w.entity: len(w.sensors) for w in writes},
        computed=computed_eras(batches),
        feature_rows=feature_rows,
        plan=plan.to_frame()["device"].value_counts().to_dict() if batches else {},
        features_computed=features.compute,
        scope=scope if sel.run else None,
        selection=selection,
        store=str(config.store.path),
        tables=list(TABLES),
        stages=clock,
        plots={},
    )
    if config.store.report:
        with store() as opened:
            sections = {
                "quality": inputs.astype({"entity": str, "sensor": str}).merge(
                    coverage_by_sensor(opened, entities, start_utc, end_utc),
                    on=["entity", "sensor"],
                    how="outer",
                ),
                "eras": eras_by_level(opened, entities),
                "features": feature_counts(opened, entities),
                "selection": selection_counts(opened, summary.scope),
                "greenhouse": greenhouse_days(
                    opened, entities, start_utc, end_utc, step=step, catalogue=catalogue
                ),
            }
        write_report(
            summary,
            sections,
            summary_folder(config.store.path),
            base_temp_c=catalogue.greenhouse.base_temp_c,
        )
    lap("report")
    return {
        "startup_s": round(first_task - launched, 2),
        "stages": clock,
        "prefect_imported": "prefect" in sys.modules,
    }


# --------------------------------------------------------------------------- the parent
def _env(home: Path) -> dict[str, str]:
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PREFECT_API_URL", None)  # the command starts its private server, as a user's does
    return env


def _watch_cpu(pid: int, marker: str, seen: dict[int, float], done: threading.Event) -> None:
    """Keep the latest CPU seconds of each descendant of ``pid`` whose command has ``marker``."""
    import psutil

    while not done.wait(0.1):
        try:
            found = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return
        for child in found:
            with contextlib.suppress(psutil.Error):
                if marker in " ".join(child.cmdline()):
                    times = child.cpu_times()
                    seen[child.pid] = times.user + times.system
                    seen[child.pid] += times.children_user + times.children_system


def _measure(
    args: list[str], env: dict[str, str], log: Path, watch: str | None = None
) -> dict[str, Any]:
    """Run ``args``; wall, CPU (user+sys, its waited-for descendants too) and peak RSS.

    With ``watch``, also ``watched_cpu_s``: the CPU of the descendants whose command line holds
    it, as last seen (polled every 0.1 s, so a lower bound: what they spent after the last look
    is missing).
    """
    began = time.perf_counter()
    seen: dict[int, float] = {}
    done = threading.Event()
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        watcher = None
        if watch:
            watcher = threading.Thread(target=_watch_cpu, args=(process.pid, watch, seen, done))
            watcher.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        if watcher is not None:
            watcher.join()
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{args[:3]} failed ({process.returncode}):\n{tail}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_gib": round(usage.ru_maxrss / 1024**2, 3),
    } | ({"watched_cpu_s": round(sum(seen.values()), 2)} if watch else {})


def _prefect_times(home: Path, launched: float, ended: float) -> dict[str, float | None]:
    """From the private server's SQLite file: launch to the pipeline run's start and first
    task, and its end to the command's exit (its newest ``pipeline[...]`` run)."""
    from datetime import UTC, datetime

    database = home / "prefect.db"
    empty: dict[str, float | None] = {"startup_s": None, "flow_start_s": None, "teardown_s": None}
    if not database.is_file():
        return empty
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT f.start_time, f.end_time, (SELECT MIN(t.start_time) FROM task_run t "
            "WHERE t.flow_run_id = f.id), (SELECT COUNT(*) FROM task_run t) "
            "FROM flow_run f WHERE f.name LIKE 'pipeline[%' ORDER BY f.created DESC LIMIT 1"
        ).fetchone()
    if not row:
        return empty

    def seconds(value: object) -> float | None:
        if value is None:
            return None
        stamp = datetime.fromisoformat(str(value).replace(" ", "T"))
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        return stamp.timestamp()

    flow_start, flow_end, first_task = seconds(row[0]), seconds(row[1]), seconds(row[2])
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        starts = [seconds(t) for (t,) in db.execute("SELECT start_time FROM task_run")]
    task_runs = sum(1 for t in starts if t is not None and t >= launched)
    return {
        "startup_s": round(first_task - launched, 2) if first_task else None,
        "flow_start_s": round(flow_start - launched, 2) if flow_start else None,
        "teardown_s": round(ended - flow_end, 2) if flow_end else None,
        "task_runs_total": task_runs,
    }


#: With ``--server shared``: the API URL and process of a server started before the pairs.
SHARED: dict[str, Any] = {}


def _server_cpu() -> float:
    """CPU seconds of the shared server and its children so far (0 without one)."""
    if not SHARED:
        return 0.0
    times = SHARED["process"].cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def start_shared_server(home: Path) -> None:
    """One server for every pair (as ``eraflow server up`` gives); its CPU is counted per run."""
    import psutil

    from flows.cli.local_server import PREFECT, QUIET, free_port, wait_healthy

    url = f"http://127.0.0.1:{free_port()}/api"
    log = home / "shared-server.log"
    port = url.split(":")[2].split("/")[0]
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port, "--analytics-off"],
        env=_env(home) | QUIET,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_healthy(url, process, 180.0, log)
    SHARED.update(url=url, popen=process, process=psutil.Process(process.pid))


def run_prefect(span: tuple[str, str], store: Path, home: Path, log: Path) -> dict[str, Any]:
    env = _env(home) | ({"PREFECT_API_URL": SHARED["url"]} if SHARED else {})
    server_before = _server_cpu()
    launched = time.time()
    args = [
        ERAFLOW,
        "run",
        "--source",
        "knudjepsen",
        "--data-root",
        str(DATA),
        "--start",
        span[0],
        "--end",
        span[1],
        "--store",
        str(store),
    ]
    figures = _measure(args, env, log, watch=None if SHARED else "server start")
    if SHARED:
        time.sleep(1.0)  # the server finishes the run's last requests
        server = round(_server_cpu() - server_before, 2)
        figures |= {"server_cpu_s": server, "cpu_s": round(figures["cpu_s"] + server, 2)}
    else:
        figures["server_cpu_s"] = figures.pop("watched_cpu_s")  # its start, the run, not its stop
    return figures | _prefect_times(home, launched, launched + figures["wall_s"])


def run_plain(span: tuple[str, str], store: Path, home: Path, log: Path) -> dict[str, Any]:
    params = {
        "source": "knudjepsen",
        "data_root": str(DATA),
        "start": span[0],
        "end": span[1],
        "store": str(store),
        "launched": time.time(),
    }
    figures = _measure([sys.executable, __file__, "--plain", json.dumps(params)], _env(home), log)
    detail = json.loads(log.read_text().strip().splitlines()[-1])
    if detail["prefect_imported"]:
        raise SystemExit("the plain run imported prefect")
    return figures | {"startup_s": detail["startup_s"], "stages": detail["stages"]}


def _table(store: Path, name: str) -> Any:
    import pandas as pd

    frame = pd.read_parquet(store / name)
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_COLUMNS])
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    keys = [c for c in frame.columns if frame[c].dtype == object or c.endswith("_id")]
    return frame.sort_values(keys or list(frame.columns)).reset_index(drop=True)


def same_tables(a: Path, b: Path) -> dict[str, str]:
    """Per compared table: 'same', or what differs."""
    import pandas as pd

    verdict = {}
    for name in COMPARED:
        if not (a / name).exists() or not (b / name).exists():
            verdict[name] = "missing"
            continue
        left, right = _table(a, name), _table(b, name)
        try:
            pd.testing.assert_frame_equal(left, right, check_like=True)
            verdict[name] = f"same ({len(left)} rows)"
        except AssertionError as exc:
            verdict[name] = "DIFFER: " + str(exc).splitlines()[0][:200]
    return verdict


def compare_in_child(a: Path, b: Path) -> dict[str, str]:
    """:func:`same_tables` in a child: reading millions of rows here would raise the peak RSS
    every later child reports (a child's ru_maxrss starts at this process's, across exec)."""
    done = subprocess.run(
        [sys.executable, __file__, "--compare", str(a), str(b)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _median(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return (float("nan"),) * 3
    return statistics.median(values), min(values), max(values)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--range", choices=sorted(RANGES), default="month")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--server",
        choices=["private", "shared"],
        default="private",
        help="private: the command starts its own server (the default); shared: one server "
        "started before the pairs (PREFECT_API_URL), its CPU during each run counted",
    )
    parser.add_argument("--plain", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "prefect_overhead.json")
    parser.add_argument("--label", default="", help="a name for this configuration (JSON)")
    args = parser.parse_args(argv)
    if args.compare:
        print(json.dumps(same_tables(*args.compare)))
        return 0
    if args.plain:
        print(json.dumps(plain_run(json.loads(args.plain))))
        return 0
    if not DATA.is_dir():
        print(f"no data at {DATA}: nothing to measure", file=sys.stderr)
        return 2
    span = RANGES[args.range]
    work = Path(tempfile.mkdtemp(prefix="eraflow-overhead-"))
    home = work / "prefect-home"
    home.mkdir()
    # The database is created and its block types registered once, untimed, by one start of
    # the command's private server (a user's .prefect-home holds both after the first run).
    from flows.cli.local_server import private_server

    with private_server(home):
        pass
    if args.server == "shared":
        start_shared_server(home)
    pairs = []
    try:
        for i in range(args.pairs):
            sides: dict[str, dict[str, Any]] = {}
            order = ["prefect", "plain"] if i % 2 == 0 else ["plain", "prefect"]
            for side in order:
                store = work / f"store-{side}-{i}"
                log = work / f"{side}-{i}.log"
                run = run_prefect if side == "prefect" else run_plain
                sides[side] = run(span, store, home, log)
                sides[side]["store"] = store
            a, b = sides["prefect"], sides["plain"]
            pair = {
                "prefect": {k: v for k, v in a.items() if k != "store"},
                "plain": {k: v for k, v in b.items() if k != "store"},
                "cpu_share": round((a["cpu_s"] - b["cpu_s"]) / a["cpu_s"], 3),
                "wall_share": round((a["wall_s"] - b["wall_s"]) / a["wall_s"], 3),
                "tables": compare_in_child(a["store"], b["store"]),
            }
            pairs.append(pair)
            print(
                f"pair {i + 1}: prefect {a['wall_s']} s wall / {a['cpu_s']} s CPU / "
                f"{a['peak_gib']} GiB; plain {b['wall_s']} / {b['cpu_s']} / {b['peak_gib']}; "
                f"share CPU {pair['cpu_share']:.1%} wall {pair['wall_share']:.1%}; "
                f"{pair['tables']}",
                flush=True,
            )
            for side in sides.values():
                shutil.rmtree(side["store"], ignore_errors=True)
    finally:
        if SHARED:
            from flows.cli.local_server import stop_tree

            stop_tree(SHARED["popen"].pid, grace=10.0)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.range} ({span[0]}..{span[1]}), {len(pairs)} pairs: median [min-max]")
    print("| figure | prefect | plain | share (A-B)/A |")
    print("|---|---|---|---|")
    for key, name in (("wall_s", "wall s"), ("cpu_s", "CPU s"), ("peak_gib", "peak RSS GiB")):
        pa = _median([p["prefect"] for p in pairs], key)
        pb = _median([p["plain"] for p in pairs], key)
        share = {"wall_s": "wall_share", "cpu_s": "cpu_share"}.get(key)
        sh = _median(pairs, share) if share else None
        cell = f"{sh[0]:.1%} [{sh[1]:.1%}-{sh[2]:.1%}]" if sh else "-"
        print(
            f"| {name} | {pa[0]:g} [{pa[1]:g}-{pa[2]:g}] | {pb[0]:g} [{pb[1]:g}-{pb[2]:g}] "
            f"| {cell} |"
        )
    server = _median([p["prefect"] for p in pairs], "server_cpu_s")
    floor = _median(
        [{"f": p["prefect"]["server_cpu_s"] / p["prefect"]["cpu_s"]} for p in pairs], "f"
    )
    print(
        f"| the Prefect server's CPU s (a floor of Prefect's share) | {server[0]:g} "
        f"[{server[1]:g}-{server[2]:g}] | - | {floor[0]:.1%} [{floor[1]:.1%}-{floor[2]:.1%}] |"
    )
    for key, name in (
        ("startup_s", "launch to first task s"),
        ("flow_start_s", "launch to flow start s"),
        ("teardown_s", "flow end to exit s"),
        ("task_runs_total", "task runs"),
    ):
        pa = _median([p["prefect"] for p in pairs], key)
        pb = _median([p["plain"] for p in pairs], key)
        cells = [f"{m[0]:g} [{m[1]:g}-{m[2]:g}]" if m[0] == m[0] else "-" for m in (pa, pb)]
        print(f"| {name} | {cells[0]} | {cells[1]} | - |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"range": args.range, "server": args.server, "label": args.label, "pairs": pairs},
            indent=2,
        )
    )
    print(f"JSON: {args.json}")
    same = all(v.startswith("same") for p in pairs for v in p["tables"].values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
