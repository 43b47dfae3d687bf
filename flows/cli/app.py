"""The ``eraflow`` command: run, backfill, load, show, matrix, catalogue, repair, server.

Options are the fields of the models that declare them (``PipelineConfig``, ``LoadSettings``,
``BackfillSettings``), with their descriptions, defaults and choices. Every check that needs no
data runs before Prefect starts; a user mistake ends with exit status 2 and one line on stderr.
Without ``PREFECT_API_URL``, a run starts a private Prefect server that dies with it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel

from eraflow.common.cli import USAGE, new_app, run_app, with_options
from eraflow.common.errors import ConfigError
from eraflow.common.memory import limit_heaps
from eraflow.common.ranges import split_range
from eraflow.common.threads import one_blas_thread
from eraflow.config import DEFAULT_STORE, BackfillSettings, PipelineConfig, PipelineParameters
from eraflow.runs.load_source import LoadSettings, load
from eraflow.runs.preflight import check_config
from eraflow.runs.summary import RunSummary, load_summary, summary_folder
from eraflow.stages.matrix import DEFAULT_MISSING, MissingPolicy, MissingValues
from flows.cli.progress_bar import stage_bars

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

app = new_app("eraflow", "Greenhouse climate data to era features: a Prefect 3 pipeline.")
server_app = new_app("eraflow server", "A local Prefect server, work pools and workers.")
app.command(server_app, name="server")
PROJECT = Path(__file__).resolve().parents[2]


@contextmanager
def _prefect_context(home: Path, preload: str | None = None) -> Iterator[None]:
    """A private server unless PREFECT_API_URL points at one (see flows.cli.local_server).

    The server is launched before Prefect is imported here: the ``preload`` module (the
    command's flow) and Prefect's settings are imported while it starts (1.0-1.5 s of the
    4 s it takes on two cores, no longer one after the other).
    """
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from flows.cli.local_server import private_server

    def meanwhile() -> None:
        importlib.import_module("prefect.settings")
        if preload:
            importlib.import_module(preload)

    with private_server(home, meanwhile=meanwhile) as url:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield
            finally:
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)  # the last log lines reach it before it stops


def _home() -> Path:
    return Path(os.environ.get("PREFECT_HOME", ".prefect-home"))


def _preflight(config: PipelineConfig) -> None:
    """Every check that needs no Prefect server: settings, files, the source's span, blocks."""
    check_config(config)
    _preflight_blocks(config)


def _preflight_blocks(config: PipelineConfig) -> None:
    """Named blocks exist, read from the private server's database (no server started)."""
    if not os.environ.get("PREFECT_API_URL"):
        from tasks.resources import check_blocks_offline

        check_blocks_offline(config, _home())


def _ended(command: str, state: State[Any]) -> int:
    """Exit status of a finished flow run; the summary's lines when it completed."""
    if not state.is_completed():
        message = " ".join(str(state.message or "").split())
        print(
            f"eraflow {command}: the flow run ended {state.type.value}: {message}",
            file=sys.stderr,
        )
        return 1
    summary = RunSummary.model_validate(state.result())
    print("\n".join(summary.lines()))
    return 0


def _tree(options: BaseModel | None) -> PipelineConfig:
    """The settings tree of the flat options the command was given."""
    return PipelineConfig.build(**(options.model_dump() if options is not None else {}))


def run(*, config: BaseModel | None = None) -> int:
    """Run the pipeline once (every option below is also a flow parameter)."""
    config = _tree(config)
    _preflight(config)
    with _prefect_context(_home(), preload="flows.pipeline"):
        from flows.pipeline import feature_pipeline
        from tasks.resources import check_resources

        check_resources(config)
        with stage_bars():
            state = cast(
                "State[Any]",
                feature_pipeline(**config.flat(), return_state=True),
            )
    return _ended("run", state)


def backfill(*, config: BaseModel | None = None, chunks: BackfillSettings | None = None) -> int:
    """Run a long range in chunks, then eras, features and selection once.

    Start and end are required. Chunks run here one after the other, or as runs of
    --chunk-deployment on a server (PREFECT_API_URL).
    """
    config, chunks = _tree(config), chunks or BackfillSettings()
    if config.source.start is None or config.source.end is None:
        raise ConfigError("a backfill needs --start and --end")
    _preflight(config)
    split_range(config.source.start, config.source.end, chunks.chunk)
    if chunks.chunk_deployment is not None and not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            f"--chunk-deployment {chunks.chunk_deployment}: chunks on a deployment need its "
            "server: export PREFECT_API_URL (eraflow server up prints the line)"
        )
    params = {k: v for k, v in config.flat().items() if k not in ("start", "end")}
    with _prefect_context(_home(), preload="flows.backfill"):
        from flows.backfill import backfill as backfill_flow
        from tasks.resources import check_resources

        check_resources(config)
        with stage_bars():
            state = cast(
                "State[Any]",
                backfill_flow(
                    start=config.source.start,
                    end=config.source.end,
                    **chunks.model_dump(),
                    parameters=params,
                    return_state=True,
                ),
            )
    return _ended("backfill", state)


def load_command(*, settings: LoadSettings | None = None) -> int:
    """Load mapped sensor files into a PostgreSQL table (idempotent upsert)."""
    if settings is None:
        raise ConfigError("eraflow load needs --mapping and --data-root (see --help)")
    print(load(settings))
    return 0


def show(*, store: Path = DEFAULT_STORE, run_id: str | None = None) -> int:
    """A finished run's summary and where its tables and report are.

    Parameters
    ----------
    store
        The store folder the run wrote to (its reports live there, whatever the store).
    run_id
        The flow run id; default: the latest run.
    """
    summary = load_summary(summary_folder(store), run_id)
    print("\n".join(summary.lines()))
    return 0


def matrix(
    *,
    scope: str,
    level: Literal["A", "B", "C"],
    out: Path,
    entity: str | None = None,
    missing: MissingPolicy = DEFAULT_MISSING.policy,
    max_missing: float | None = DEFAULT_MISSING.max_missing,
    mask: bool = DEFAULT_MISSING.mask,
    store: Path = DEFAULT_STORE,
    store_block: str | None = None,
) -> int:
    """Export one level's feature matrix of a scope (one row per era) to Parquet or CSV.

    The file's index is (entity, level, era_id, start, end); its columns are the kept
    features, numeric, with missing values handled as ``--missing`` says, so it goes into a
    model as it is.

    Parameters
    ----------
    scope
        The selection scope, e.g. 'kj_no3+kj_no4' (eraflow show prints it).
    level
        Era level.
    out
        File to write: .parquet or .csv.
    entity
        Only this entity's eras.
    missing
        Missing values: keep (as stored), drop (features with gaps), median or neighbours
        (features missing on too many eras dropped, other gaps imputed).
    max_missing
        Largest share of eras a kept feature may miss (default: 0 for drop, 0.5 to impute).
    mask
        Add a '<feature>__missing' column (1 where imputed) per imputed feature.
    store
        The Parquet store folder.
    store_block
        A saved store block 'slug/name' instead of the folder.
    """
    policy = MissingValues(missing, max_missing, mask)
    if out.suffix not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: write a .parquet or a .csv file")
    folder = next((p for p in out.parents if p.exists()), Path("."))
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: {folder} is a file, not a folder; write elsewhere")
    import pandas as pd

    from eraflow.runs.scope import read_era_times, read_feature_matrix

    config = PipelineConfig.build(store=store, store_block=store_block)
    _preflight_blocks(config)
    context = _prefect_context(_home()) if store_block else nullcontext()
    with context:
        from tasks.resources import store_session

        with store_session(config.store) as opened:
            values = read_feature_matrix(opened, scope, level, entity=entity, missing=policy)
            times = read_era_times(opened, scope, level, entity=entity)
    frame = values.set_index(pd.MultiIndex.from_frame(times.reset_index()))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out)
    else:
        frame.to_parquet(out)
    print(f"wrote {len(frame)} eras x {frame.shape[1]} features to {out} ({policy.describe()})")
    return 0


def repair(*, store: Path = DEFAULT_STORE, store_block: str | None = None) -> int:
    """Find unreadable files of a Parquet store, move them aside, and say what to re-run.

    Each unreadable file goes to ``<store>/.quarantine/``; its key range is left empty, and
    the lines printed name the ranges a re-run (``eraflow run --start .. --end ..``) writes
    again. Exit status 0 when nothing was found, 1 when something was moved.

    Parameters
    ----------
    store
        The Parquet store folder.
    store_block
        A saved store block instead of the folder (a PostgreSQL store has nothing to scan).
    """
    from eraflow.store.repair import repair as repair_store

    config = PipelineConfig.build(store=store, store_block=store_block)
    _preflight_blocks(config)
    if store_block is None and not (store / "grid").is_dir():
        raise ConfigError(f"--store {store}: not an eraflow store (no grid folder in it)")
    context = _prefect_context(_home()) if store_block else nullcontext()
    with context:
        from tasks.resources import store_session

        with store_session(config.store) as opened:
            report = repair_store(opened)
    print("\n".join(report.lines()))
    return 0 if report.clean else 1


def catalogue(*, catalogue: Path | None = None, sensor: str | None = None) -> int:
    """Print the sensor catalogue (with a user catalogue's overrides applied).

    Parameters
    ----------
    catalogue
        A user catalogue TOML (entries override or extend the packaged one).
    sensor
        Only this sensor, every field.
    """
    from eraflow.catalogue import load_catalogue

    table = load_catalogue(catalogue).to_frame()
    if sensor is not None:
        rows = table[table["name"] == sensor]
        if rows.empty:
            raise ConfigError(
                f"no sensor {sensor!r} in the catalogue; sensors are {', '.join(table['name'])}"
            )
        for key, value in rows.iloc[0].items():
            print(f"{key:>16}: {value}")
        return 0
    columns = [
        "name",
        "unit",
        "kind",
        "valid_min",
        "valid_max",
        "max_fill_gap",
        "tsfresh_profile",
        "gpu",
    ]
    print(table[[c for c in columns if c in table]].to_string(index=False))
    return 0


@server_app.command
def up(
    *,
    port: int = 4200,
    home: Path = Path(".prefect-home"),
    workers: bool = True,
    deploy: bool = True,
) -> int:
    """Start a Prefect server, the work pools, the deployments and a worker per pool.

    With the server already running, start again only the workers that are not (a dead one).

    Parameters
    ----------
    port
        Port of the server (and its UI) on 127.0.0.1.
    home
        PREFECT_HOME of the server; logs and pid files go to <home>/eraflow-server.
    workers
        Start a cpu-pool and a gpu-pool worker.
    deploy
        Create the pools and register prefect.yaml's deployments.
    """
    from flows.cli.local_server import server_up, server_url

    started = server_up(home, port, workers=workers, deploy=deploy, project=PROJECT)
    url = server_url(home)
    if "server" not in started:
        print(
            f"the server of {home} already runs; started again: {', '.join(started) or 'nothing'}"
        )
    else:
        print(f"Prefect server on {url.removesuffix('/api')} (logs: {home}/eraflow-server)")
    print(f"export PREFECT_API_URL={url} PREFECT_HOME={home.resolve()}")
    return 0


@server_app.command
def restart(*, pool: Literal["cpu-pool", "gpu-pool"], home: Path = Path(".prefect-home")) -> int:
    """Stop one pool's worker (and its flow runs) and start it again.

    Parameters
    ----------
    pool
        The work pool whose worker to restart.
    home
        The PREFECT_HOME given to 'server up'.
    """
    from flows.cli.local_server import restart_worker

    restart_worker(home, pool, PROJECT)
    print(f"{pool}: worker restarted")
    return 0


@server_app.command
def down(*, home: Path = Path(".prefect-home")) -> int:
    """Stop the server and workers that 'eraflow server up' started, and their flow runs.

    Parameters
    ----------
    home
        The PREFECT_HOME given to 'server up'.
    """
    from flows.cli.local_server import server_down

    stopped = server_down(home)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


@server_app.command
def status(*, home: Path = Path(".prefect-home")) -> int:
    """Which of the server and the workers are running.

    Parameters
    ----------
    home
        The PREFECT_HOME given to 'server up'.
    """
    from flows.cli.local_server import server_status

    for name, alive in server_status(home).items():
        print(f"{name:>9}: {'running' if alive else 'stopped'}")
    return 0


app.command(with_options(run, config=PipelineParameters), name="run")
app.command(
    with_options(backfill, config=PipelineParameters, chunks=BackfillSettings), name="backfill"
)
app.command(with_options(load_command, settings=LoadSettings), name="load")
app.command(show)
app.command(matrix)
app.command(catalogue)
app.command(repair)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eraflow`` console script."""
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "eraflow",
    }.items():
        os.environ.setdefault(key, value)  # offline, quiet: no telemetry calls home
    limit_heaps()
    one_blas_thread()
    return run_app(app, argv, "eraflow")


__all__ = ["USAGE", "app", "main"]
