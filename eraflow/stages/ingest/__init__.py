"""Ingest: mapped source files (CSV, Parquet, JSON streams) → canonical long rows in UTC."""

from eraflow.stages.ingest.mapping import (
    ColumnMap,
    MappingFile,
    SourceMapping,
    TimeSpec,
    load_mapping,
    parse_mapping,
    preset_names,
)
from eraflow.stages.ingest.readers import (
    LONG_COLUMNS,
    IngestResult,
    SourceReport,
    empty_long,
    read_mapping,
    read_source,
)

__all__ = [
    "LONG_COLUMNS",
    "ColumnMap",
    "IngestResult",
    "MappingFile",
    "SourceMapping",
    "SourceReport",
    "TimeSpec",
    "empty_long",
    "load_mapping",
    "parse_mapping",
    "preset_names",
    "read_mapping",
    "read_source",
]
