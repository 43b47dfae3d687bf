"""The ``era-features`` sub-flow: engine and tsfresh features for a list of era batches.

Deployed twice (``era-features/gpu`` on gpu-pool, ``era-features/cpu`` on cpu-pool); the
parent flow calls it in process or through ``run_deployment``. Parameters are plain JSON
(batch and config dicts), so a pool worker on another host can receive them. Whether an era
is due was decided by the store (its feature ledger) when the eras were updated; every batch
given here is computed.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from pydantic import ValidationError

from eraflow.common.errors import ConfigError, validation_message
from eraflow.common.threads import one_blas_thread
from eraflow.config import PipelineConfig
from eraflow.stages.batches import EraBatch
from eraflow.stages.features import gpu_available
from tasks._common import RunProgress
from tasks.children import follow_worker
from tasks.features import era_features
from tasks.tsfresh import era_tsfresh_features


def _failures(futures: list[Any]) -> list[str]:
    return [f"{f.state.name}: {f.state.message}" for f in futures if not f.state.is_completed()]


def parse_batches(batches: list[dict[str, Any]]) -> list[EraBatch]:
    """Validate every batch first; one ConfigError names each bad one (nothing runs)."""
    parsed, problems = [], []
    for i, raw in enumerate(batches):
        try:
            parsed.append(EraBatch.model_validate(raw))
        except ValidationError as exc:
            problems.append(f"batch {i}: {validation_message(exc)}")
    if problems:
        raise ConfigError("invalid era batches: " + "; ".join(problems))
    return parsed


def _run_name() -> str:
    """``era-features[cpu #1]``: each worker group's child run tells which it is."""
    params = flow_run.get_parameters()
    group = params.get("group")
    return (
        f"era-features[{params.get('device', 'auto')}{f' #{group}' if group is not None else ''}]"
    )


@flow(name="era-features", flow_run_name=_run_name)
def era_features_flow(
    batches: list[dict[str, Any]],
    config: dict[str, Any],
    device: Literal["auto", "gpu", "cpu"] = "auto",
    run_id: str = "local",
    group: int | None = None,
) -> dict[str, int]:
    """Compute and store the features of every batch; fail naming each failed batch.

    Args:
        batches: Era batches (EraBatch as JSON): entity, level, stage, era id range.
        config: The parent run's PipelineConfig as JSON (the store, profiles, settings).
        device: Where the engine runs; a GPU worker without CUDA computes on NumPy.
        run_id: The parent pipeline run, written into every feature row.
        group: The planner's worker group of these batches (names the run).
    """
    follow_worker()
    one_blas_thread()
    settings = PipelineConfig.build(**config)
    era_batches = parse_batches(batches)
    if device == "gpu" and not gpu_available():
        # A gpu-pool worker without a usable CUDA device still does the work, on NumPy.
        get_run_logger().warning(
            "no CUDA device on this worker: %d batches on the CPU", len(era_batches)
        )
        device = "cpu"
    parts = (settings.features, settings.grid, settings.store, settings.source.catalogue)
    engine = [
        era_features.submit(b, *parts, run_id, device) for b in era_batches if b.stage == "engine"
    ]
    tsfresh = [
        era_tsfresh_features.submit(b, *parts, run_id) for b in era_batches if b.stage == "tsfresh"
    ]
    progress = RunProgress(f"features on {device}", "batches")
    for done, future in enumerate(as_completed(engine + tsfresh), start=1):
        future.wait()  # as_completed may hand a future over before its state is final
        progress(done, len(engine) + len(tsfresh), str(future.state.name))
    progress.finish()
    failed = _failures(engine) + _failures(tsfresh)
    if failed:
        raise RuntimeError(f"{len(failed)} era batch task(s) failed:\n" + "\n".join(failed))
    rows = {"engine": sum(f.result() for f in engine), "tsfresh": sum(f.result() for f in tsfresh)}
    get_run_logger().info("%d batches on %s: %s", len(era_batches), device, rows)
    return rows
