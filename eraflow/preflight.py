"""Checks a run makes before it writes anything: every one needs no Prefect and no data write.

A bad parameter, mapping or catalogue file, a source without files, an unknown entity or a
device that is not there fails here, with a message naming it and what to change, so a bad
run leaves the store exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

from eraflow.catalogue import load_catalogue
from eraflow.config import POSTGRES, SIMULATOR, PipelineConfig
from eraflow.errors import ConfigError, DataError
from eraflow.features import gpu_available
from eraflow.ingest import load_mapping
from eraflow.ingest.readers import source_files


def check_config(config: PipelineConfig) -> None:
    """Everything knowable before reading data: catalogue, mapping, files, device, entities."""
    load_catalogue(config.catalogue)
    if config.source == SIMULATOR:
        if config.entities is not None:
            known = set(config.simulator.entities)
            unknown = sorted(set(config.entities) - known)
            if unknown:
                raise ConfigError(
                    f"entities {unknown} are not simulated; the simulator has "
                    f"{sorted(known)} (simulator.entities)"
                )
    elif config.source != POSTGRES:
        mapping = load_mapping(config.source)
        chosen = mapping.sources
        if config.sources is not None:
            known = {s.name for s in mapping.sources}
            unknown = sorted(set(config.sources) - known)
            if unknown:
                raise ConfigError(
                    f"sources {unknown} are not in the mapping; it has {sorted(known)}"
                )
            chosen = [s for s in mapping.sources if s.name in set(config.sources)]
        for source in chosen:
            source_files(source, Path(config.data_root or "."))
    if config.device == "gpu" and not gpu_available():
        raise ConfigError(
            "device 'gpu' was asked for, but CuPy sees no CUDA device here: use "
            "device 'auto' (GPU when present) or 'cpu'"
        )


def check_entities(config: PipelineConfig, found: list[str]) -> None:
    """After reading: every asked-for entity is in the data (before anything is written)."""
    if config.entities is None:
        return
    missing = sorted(set(config.entities) - set(found))
    if missing:
        raise DataError(
            f"entities {missing} have no data in the source for this range; the "
            f"source holds {sorted(found)}: fix --entities or the range"
        )
