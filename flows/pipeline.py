"""The parent flow ``feature-pipeline``: ingest → aggregate → gap-fill → store.

Later stages (eras, features, tsfresh, selection) plug in after the grid is stored: they read
their own slices from the store rather than receiving data through parameters.
Run it on the embedded default with ``python -m flows.pipeline`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from eraflow.config import SIMULATOR, PipelineConfig, SimulatorSettings
from eraflow.grid import grid_step
from tasks.aggregate import aggregate_grid
from tasks.gapfill import fill_gaps
from tasks.ingest import ingest_sources
from tasks.store import describe_store, write_grid


@flow(name="feature-pipeline", flow_run_name="pipeline[{source}]", log_prints=True)
def feature_pipeline(
    source: str = SIMULATOR,
    data_root: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    freq: str = "5min",
    store: str = "eraflow-store",
    catalogue: str | None = None,
    sources: list[str] | None = None,
    entities: list[str] | None = None,
    simulator: SimulatorSettings | None = None,
    store_block: str | None = None,
    source_block: str | None = None,
    postgres_source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Preprocess one range of one source set into the stored grid.

    Parameters are validated up front (a bad one fails the run before any work, with a
    message naming it). ``start``/``end`` are UTC; naive values are taken as UTC.
    """
    config = PipelineConfig.build(
        source=source, data_root=data_root, start=start, end=end, freq=freq, store=store,
        catalogue=catalogue, sources=sources, entities=entities,
        simulator=simulator or SimulatorSettings(), store_block=store_block,
        source_block=source_block, postgres_source=postgres_source,
    )
    frames = ingest_sources(config)
    aggregated = aggregate_grid(frames, config)
    filled = fill_gaps(aggregated.grid, config)
    grid = filled.grid
    start_utc = config.start or grid["time"].min()
    end_utc = config.end or grid["time"].max() + grid_step(config.freq)
    rows = write_grid(filled.grid, filled.coverage, config, start_utc, end_utc)

    summary = {
        "store": describe_store(config),
        "grid_rows": int(rows),
        "entities": sorted(grid["entity"].unique().tolist()),
        "sensors": int(sum(1 for c in grid.columns if c not in ("time", "entity")
                           and not c.startswith("filled__"))),
        "start": str(start_utc),
        "end": str(end_utc),
    }
    create_markdown_artifact(
        key="pipeline-summary",
        markdown="\n".join(
            ["# eraflow run", "", "| item | value |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in summary.items()]
            + ([] if config.store_block else
               ["", f"Read the grid with `pandas.read_parquet('{summary['store']}/grid')`."])
        ),
        description="Where this run's results are",
    )
    get_run_logger().info("grid stored in %s", summary["store"])
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description="Run the eraflow pipeline once (ephemeral Prefect unless PREFECT_API_URL "
        "points at a server).",
    )
    parser.add_argument("--source", default=SIMULATOR,
                        help="'simulator' (default), a preset (knudjepsen, aarslev) or a "
                        "mapping TOML file")
    parser.add_argument("--data-root", help="folder holding the source files")
    parser.add_argument("--start", help="UTC start, e.g. 2015-10-01")
    parser.add_argument("--end", help="UTC end (exclusive)")
    parser.add_argument("--freq", default="5min", help="grid step (default 5min)")
    parser.add_argument("--store", default="eraflow-store", help="Parquet store folder")
    parser.add_argument("--catalogue", help="user sensor catalogue TOML")
    parser.add_argument("--days", type=int, default=42, help="simulator: days to simulate")
    parser.add_argument("--seed", type=int, default=7, help="simulator: random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run the flow and print where the results are."""
    args = _parse_args(argv)
    state = feature_pipeline(
        source=args.source, data_root=args.data_root, start=args.start, end=args.end,
        freq=args.freq, store=args.store, catalogue=args.catalogue,
        simulator=SimulatorSettings(days=args.days, seed=args.seed), return_state=True,
    )
    if not state.is_completed():
        print(f"flow run ended {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    summary = state.result()
    print(f"flow run Completed: {summary['grid_rows']} grid rows for "
          f"{', '.join(summary['entities'])} ({summary['start']} .. {summary['end']})")
    print(f"results: {summary['store']}/grid  (pandas.read_parquet(...))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
