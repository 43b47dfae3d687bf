"""What a source holds, cheaply: per entity its first and last UTC time and its rows in a range.

Why: an unknown compartment or a range with no data used to fail only after ingest, aggregation
and gap-filling (half a minute on a real year). A span answers both questions from the time
and entity columns alone, so a run can refuse such a mistake before any work (see
:func:`check_span`).

- Mapped files: only the time column(s), and the entity (or long layout's sensor) column where
  the mapping needs one, are read; timestamps are localised like the reader does, falling back
  to a lenient rule where the mapping's DST policy would raise (a span needs bounds and counts,
  the reader reports the DST problem itself). A CSV row whose field count is not the header's
  is refused or skipped by the reader's own check (``check_ragged``: the same line named, the
  same rows skipped), and a UTF-8 byte-order mark is dropped. The scan is cached per process,
  keyed by the mapping and the files' (path, size, mtime), because a backfill checks once per
  chunk.
- The simulator: its entities and [simulator start, start + days).
- A PostgreSQL table: one ``GROUP BY entity`` query (min, max and a filtered count).

A span's ``rows`` are source rows: one per timestamp of a wide file (for each entity the row
feeds), one per value of a long file or table. Rows whose values are all empty still count: the
span is a bound on what ingest finds, not a replacement for it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from eraflow.common.errors import ConfigError, IngestError
from eraflow.stages.ingest.mapping import MappingFile, SourceMapping
from eraflow.stages.ingest.readers import (
    RaggedRows,
    _arrow_encoding,
    _arrow_sees_ragged,
    _load_table,
    _parse_times,
    _positions,
    _read_header,
    check_ragged,
    file_encoding,
    skip_rows,
    source_files,
)
from eraflow.stages.ingest.timezones import localise_to_utc

if TYPE_CHECKING:
    import psycopg

    from eraflow.stages.ingest.postgres_source import PostgresSourceConfig

SpanKind = Literal["files", "simulator", "postgres"]
SIMULATOR_STEP = pd.Timedelta("1min")
"""Step of the simulator's densest source (``simulate``'s ``raw_step``): its rows per entity."""
SCAN_CACHE_MAX_TIMES = 50_000_000
"""Most timestamps a cached scan may hold (8 bytes each, so at most about 400 MB)."""


@dataclass(frozen=True)
class EntitySpan:
    """What one entity holds: first and last UTC time (None: no row at all) and rows in range."""

    first: pd.Timestamp | None
    last: pd.Timestamp | None
    rows: int


@dataclass(frozen=True)
class SourceSpan:
    """What a source holds per entity, with rows counted in [start, end) (None: unbounded).

    ``source`` is the name the user gave (``'knudjepsen'``, a mapping path, a table);
    ``covers`` is the half-open range a generated source (the simulator) makes data for.
    """

    source: str
    kind: SpanKind
    entities: Mapping[str, EntitySpan]
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    covers: tuple[pd.Timestamp, pd.Timestamp] | None = None

    @property
    def first(self) -> pd.Timestamp | None:
        """The earliest time of any entity (None when the source holds no row)."""
        times = [e.first for e in self.entities.values() if e.first is not None]
        return min(times) if times else None

    @property
    def last(self) -> pd.Timestamp | None:
        """The latest time of any entity (None when the source holds no row)."""
        times = [e.last for e in self.entities.values() if e.last is not None]
        return max(times) if times else None

    @property
    def rows(self) -> int:
        """Rows of every entity in [start, end)."""
        return sum(e.rows for e in self.entities.values())


# -- mapped files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceScan:
    """The scanned times of one mapped source: per entity, sorted UTC microseconds since epoch.

    An entity the mapping declares but no row feeds has an empty array.
    """

    source: str
    files: tuple[str, ...]
    times: Mapping[str, np.ndarray]

    def span(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> dict[str, EntitySpan]:
        """First, last and rows in [start, end) per entity (a binary search per bound)."""
        lo, hi = _micros(start), _micros(end)
        spans = {}
        for entity, times in self.times.items():
            if not len(times):
                spans[entity] = EntitySpan(None, None, 0)
                continue
            left = 0 if lo is None else int(np.searchsorted(times, lo, side="left"))
            right = len(times) if hi is None else int(np.searchsorted(times, hi, side="left"))
            spans[entity] = EntitySpan(
                _stamp(int(times[0])), _stamp(int(times[-1])), max(right - left, 0)
            )
        return spans


_SCANS: dict[tuple[object, ...], SourceScan] = {}
_SCANS_LOCK = threading.Lock()


def scan_source(mapping: SourceMapping, root: str | Path) -> SourceScan:
    """The times of one mapped source, scanned once per process while its files are unchanged.

    The cache key is the mapping and each file's resolved path, size and mtime (like the
    reader's ``_read_cached``): a changed, added or removed file is scanned again.
    """
    files = source_files(mapping, Path(root))
    stamp = []
    for path in files:
        stat = path.stat()
        stamp.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    key = (mapping.model_dump_json(), *stamp)
    with _SCANS_LOCK:
        cached = _SCANS.get(key)
    if cached is not None:
        return cached
    scan = _scan_files(mapping, files)
    if sum(len(t) for t in scan.times.values()) <= SCAN_CACHE_MAX_TIMES:
        with _SCANS_LOCK:
            for stale in [k for k in _SCANS if k[0] == key[0]]:
                del _SCANS[stale]
            _SCANS[key] = scan
    return scan


def clear_scan_cache() -> None:
    """Forget every cached scan (tests, or a process that knows its files were replaced)."""
    with _SCANS_LOCK:
        _SCANS.clear()


def mapping_span(
    mapping: MappingFile,
    root: str | Path,
    *,
    name: str,
    sources: Sequence[str] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> SourceSpan:
    """The span of a mapping's sources (all, or the named ones) under ``root``.

    ``name`` is how the user named the mapping (a preset or a path), used in messages.
    """
    chosen = mapping.sources
    if sources is not None:
        known = {s.name for s in mapping.sources}
        unknown = sorted(set(sources) - known)
        if unknown:
            raise ConfigError(f"sources {unknown} are not in the mapping; it has {sorted(known)}")
        chosen = [s for s in mapping.sources if s.name in set(sources)]
    merged: dict[str, EntitySpan] = {}
    for source in chosen:
        for entity, part in scan_source(source, root).span(start, end).items():
            merged[entity] = _merge(merged[entity], part) if entity in merged else part
    return SourceSpan(
        source=name, kind="files", entities=dict(sorted(merged.items())), start=start, end=end
    )


def _merge(a: EntitySpan, b: EntitySpan) -> EntitySpan:
    firsts = [t for t in (a.first, b.first) if t is not None]
    lasts = [t for t in (a.last, b.last) if t is not None]
    return EntitySpan(
        min(firsts) if firsts else None, max(lasts) if lasts else None, a.rows + b.rows
    )


def _scan_files(mapping: SourceMapping, files: list[Path]) -> SourceScan:
    pieces: dict[str, list[np.ndarray]] = {e: [] for e in declared_entities(mapping)}
    for path in files:
        for entity, found in _scan_file(path, mapping).items():
            pieces.setdefault(entity, []).append(found)
    times = {
        entity: np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
        for entity, parts in sorted(pieces.items())
    }
    return SourceScan(source=mapping.name, files=tuple(str(f) for f in files), times=times)


def declared_entities(mapping: SourceMapping) -> list[str]:
    """Entities the mapping names itself (``entity``, per-column ``entity``); not a column's."""
    names = [c.entity for c in mapping.columns if c.entity]
    per_column_all = bool(mapping.columns) and all(c.entity for c in mapping.columns)
    if mapping.entity and mapping.entity_column is None and not per_column_all:
        names.append(mapping.entity)
    return sorted(set(names))


@dataclass(frozen=True)
class _Needs:
    """Which columns a scan reads, by name or position, and what the rows feed."""

    time: list[str | int]
    entity: str | None
    sensor: str | None


def _needs(mapping: SourceMapping) -> _Needs:
    long = mapping.layout == "long" or mapping.format == "json-readings"
    if mapping.format == "json-readings":
        time_refs: list[str | int] = ["time"]
        sensor_column = "uuid"
    else:
        time_refs = list(mapping.time.columns)
        sensor_column = mapping.sensor_column or ""
    # A long row is kept only when its sensor is mapped (and may carry that sensor's entity).
    sensor = sensor_column if long and mapping.columns else None
    # A wide row feeds the entity column's entity only through columns without their own.
    entity = mapping.entity_column
    if not long and mapping.columns and all(c.entity for c in mapping.columns):
        entity = None
    return _Needs(time=time_refs, entity=entity, sensor=sensor)


def _scan_file(path: Path, mapping: SourceMapping) -> dict[str, np.ndarray]:
    """Per entity, the UTC times (microseconds) of one file's rows."""
    needs = _needs(mapping)
    refs: list[str | int] = [*needs.time]
    if needs.entity is not None:
        refs.append(needs.entity)
    if needs.sensor is not None:
        refs.append(needs.sensor)
    columns = _read_columns(path, mapping, refs, len(needs.time))
    if columns is None:
        return {}
    count = len(needs.time)
    times = _utc_micros(columns[:count], mapping, path)
    keep = times != _NAT
    entity_values = columns[count] if needs.entity is not None else None
    sensor_values = columns[-1] if needs.sensor is not None else None
    return _by_entity(times, keep, entity_values, sensor_values, mapping)


def _by_entity(
    times: np.ndarray,
    keep: np.ndarray,
    entity_values: pd.Series | None,
    sensor_values: pd.Series | None,
    mapping: SourceMapping,
) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}

    def add(entity: str, mask: np.ndarray | None) -> None:
        chosen = keep if mask is None else keep & mask
        out.setdefault(entity, []).append(times[chosen])

    def add_base(mask: np.ndarray | None) -> None:
        if entity_values is not None:
            labels = _labels(entity_values)
            base = labels != None  # noqa: E711 (elementwise)
            if mask is not None:
                base &= mask
            for label in pd.unique(labels[base & keep]):
                add(str(label), base & (labels == label))
        elif mapping.entity:
            add(mapping.entity, mask)

    long = mapping.layout == "long" or mapping.format == "json-readings"
    if long:
        if sensor_values is None:
            add_base(None)
        else:
            lookup = {
                c.column if c.column is not None else str(c.index): c for c in mapping.columns
            }
            sensors = _labels(sensor_values)
            own = {k: c.entity for k, c in lookup.items() if c.entity}
            for entity in sorted(set(own.values())):
                keys = [k for k, e in own.items() if e == entity]
                add(entity, np.isin(sensors, keys))
            plain = [k for k in lookup if k not in own]
            if plain:
                add_base(np.isin(sensors, plain))
    else:
        for entity in sorted({c.entity for c in mapping.columns if c.entity}):
            add(entity, None)
        if not mapping.columns or not all(c.entity for c in mapping.columns):
            add_base(None)
    return {e: np.concatenate(parts) for e, parts in out.items()}


_NAT = np.iinfo(np.int64).min


def _labels(values: pd.Series) -> np.ndarray:
    """Entity or sensor labels as the reader makes them (``astype("string")``), None if empty."""
    return values.astype("string").to_numpy(dtype=object, na_value=None)


def _read_columns(
    path: Path, mapping: SourceMapping, refs: list[str | int], times: int
) -> list[pd.Series] | None:
    """Only the referenced columns of one file, as pandas Series (None: the file has no rows).

    The first ``times`` references are the time columns, read as text (or as Parquet stores
    them); the entity and sensor columns come with the types the reader would infer, so their
    labels match the reader's once made text.
    """
    if mapping.format == "json-readings":
        table, names, _ = _load_table(path, mapping)
        positions = [_positions(names, ref, path, "column") for ref in refs]
        return [table.iloc[:, p] for p in positions] if len(table) else None
    if mapping.format == "parquet":
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowInvalid) as exc:
            raise IngestError(f"{path}: cannot read as parquet: {exc}") from exc
        positions = [_positions(names, ref, path, "column") for ref in refs]
        wanted = list(dict.fromkeys(names[p] for p in positions))
        frame = pq.read_table(path, columns=wanted).to_pandas()
        return [frame[names[p]] for p in positions] if len(frame) else None
    encoding = file_encoding(path, mapping.encoding)
    header = _read_header(path, mapping, encoding)
    names = header[mapping.name_row] if header else None
    positions = [_positions(names, ref, path, "column") for ref in refs]
    text_positions = set(positions[:times])
    width = len(names) if names is not None else None
    try:
        body, flagged = _arrow_csv(path, mapping, positions, text_positions, width, encoding)
    except (pa.ArrowInvalid, pa.ArrowKeyError, UnicodeDecodeError, KeyError):
        body, flagged = None, _arrow_sees_ragged(path, mapping, encoding, width)
    # The reader's own check: the same refusal, or the same rows skipped (pyarrow left out
    # every row it flagged, so a flagged file is read again the reader's way).
    ragged = check_ragged(path, mapping, width, flagged=flagged)
    if body is None or flagged:
        body = _pandas_csv(path, mapping, positions, text_positions, encoding, ragged)
    if body is None or not len(body):
        return None
    return [body[p] for p in positions]


def _arrow_csv(
    path: Path,
    mapping: SourceMapping,
    positions: list[int],
    text: set[int],
    width: int | None,
    encoding: str,
) -> tuple[pd.DataFrame | None, bool]:
    """Read with pyarrow: several times faster than pandas' parser on a column of a wide file.

    Also says whether a row's field count is not ``width`` (the header's; None: the first
    row's): such a row is left out here, and the caller reads the file again the reader's way.
    """
    wanted = sorted(set(positions))
    flagged: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        flagged.append(row.actual_columns)
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            skip_rows=mapping.header_rows,
            column_names=None if width is None else [f"f{i}" for i in range(width)],
            autogenerate_column_names=width is None,
            encoding=_arrow_encoding(encoding),
        ),
        parse_options=pacsv.ParseOptions(delimiter=mapping.delimiter, invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(
            include_columns=[f"f{p}" for p in wanted],
            column_types={f"f{p}": pa.string() for p in wanted if p in text},
            null_values=mapping.na_values,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    frame = pd.DataFrame(
        {p: table.column(f"f{p}").to_pandas(types_mapper=_strings) for p in wanted}
    )
    return frame, bool(flagged)


def _strings(dtype: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    return (
        pd.StringDtype() if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) else None
    )


def _pandas_csv(
    path: Path,
    mapping: SourceMapping,
    positions: list[int],
    text: set[int],
    encoding: str,
    ragged: RaggedRows | None,
) -> pd.DataFrame | None:
    """Read with pandas' C parser, as the reader does: for files pyarrow's stricter one refuses.

    ``ragged`` rows (under ``on_ragged = "skip"``) are skipped, as the reader skips them.
    """
    try:
        return pd.read_csv(
            path,
            sep=mapping.delimiter,
            header=None,
            skiprows=skip_rows(mapping, ragged),
            usecols=sorted(set(positions)),
            na_values=mapping.na_values,
            keep_default_na=False,
            encoding=encoding,
            dtype={p: "string" for p in text},
            low_memory=False,
        )
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise IngestError(
            f"{path}: cannot parse as {mapping.format} (delimiter {mapping.delimiter!r}): {exc}"
        ) from exc


def _utc_micros(columns: list[pd.Series], mapping: SourceMapping, path: Path) -> np.ndarray:
    """UTC microseconds since the epoch per row (``_NAT`` where the DST policy drops it)."""
    spec = mapping.time
    naive = _fast_parse(columns, mapping)
    if naive is None:
        frame = pd.concat([c.reset_index(drop=True) for c in columns], axis=1, ignore_index=True)
        naive = _parse_times(frame, list(range(len(columns))), mapping, path)
    if naive.tz is not None:
        utc = naive.tz_convert("UTC")
    elif spec.timezone == "UTC":
        utc = naive.tz_localize("UTC")
    else:
        try:
            utc = localise_to_utc(
                naive,
                timezone=spec.timezone,
                ambiguous=spec.ambiguous,
                nonexistent=spec.nonexistent,
                where=str(path),
            ).utc
        except IngestError:
            # The reader raises this itself; a span only needs bounds and counts.
            utc = naive.tz_localize(
                spec.timezone, ambiguous=np.ones(len(naive), bool), nonexistent="shift_forward"
            ).tz_convert("UTC")
    micros = utc.as_unit("us").asi8.copy()
    micros[np.asarray(utc.isna())] = _NAT
    return micros


def _fast_parse(columns: list[pd.Series], mapping: SourceMapping) -> pd.DatetimeIndex | None:
    """Text times with a strptime format, parsed by pyarrow (pandas' format path is ~10x slower).

    None when this path does not apply or leaves a row unparsed: the reader's own parser then
    parses (and names the bad line).
    """
    spec = mapping.time
    if spec.format is None or spec.unit is not None:
        return None
    if not all(pd.api.types.is_string_dtype(c.dtype) for c in columns):
        return None
    arrays = [pa.array(c.astype("string").to_numpy(dtype=object, na_value=None)) for c in columns]
    text = arrays[0] if len(arrays) == 1 else pc.binary_join_element_wise(*arrays, " ")
    text = pc.utf8_trim_whitespace(text)
    try:
        parsed = pc.strptime(text, format=spec.format, unit="us", error_is_null=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if parsed.null_count:
        return None
    return pd.DatetimeIndex(parsed.to_pandas())


def _micros(value: pd.Timestamp | None) -> int | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("us").asm8.astype("int64"))


def _stamp(micros: int) -> pd.Timestamp:
    return pd.Timestamp(micros, unit="us", tz="UTC")


# -- the simulator ----------------------------------------------------------------------------


class SimulatedRange(Protocol):
    """What the simulator is asked for (``eraflow.config.SimulatorSettings`` has it)."""

    @property
    def start(self) -> datetime:
        """First simulated time; naive means UTC."""

    @property
    def days(self) -> int:
        """Days simulated."""

    @property
    def entities(self) -> Sequence[str]:
        """Compartments simulated."""


def simulator_span(
    settings: SimulatedRange,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> SourceSpan:
    """The simulator's span: every entity covers [settings.start, settings.start + days).

    Rows are the densest source's (one per :data:`SIMULATOR_STEP`) inside [start, end); no
    data is simulated to know this.
    """
    first = _utc(settings.start)
    stop = first + pd.Timedelta(days=settings.days)
    total = int((stop - first) // SIMULATOR_STEP)
    lo = 0 if start is None else min(max(_steps_until(first, _utc(start)), 0), total)
    hi = total if end is None else min(max(_steps_until(first, _utc(end)), 0), total)
    part = EntitySpan(first, first + (total - 1) * SIMULATOR_STEP, max(hi - lo, 0))
    return SourceSpan(
        source="simulator",
        kind="simulator",
        entities={e: part for e in settings.entities},
        start=start,
        end=end,
        covers=(first, stop),
    )


def _steps_until(origin: pd.Timestamp, moment: pd.Timestamp) -> int:
    """How many simulator steps start before ``moment`` (the index of the first at or after)."""
    return math.ceil((moment - origin) / SIMULATOR_STEP)


def _utc(value: datetime | pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


# -- PostgreSQL -------------------------------------------------------------------------------


def postgres_span(
    config: PostgresSourceConfig,
    connection: psycopg.Connection,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> SourceSpan:
    """The span of a sensor table from one ``GROUP BY entity`` query on an open connection.

    Per entity: ``min`` and ``max`` of the time column and ``count(*)`` of the rows in
    [start, end) (a long table's rows are limited to ``config.sensors`` where given, as the
    reader does). Identifiers go through ``psycopg.sql``, values are parameters. A
    timestamp-without-time-zone column is read in ``config.timezone``, like the reader.
    """
    from psycopg import sql

    from eraflow.common.pg import kind_of_pg
    from eraflow.stages.ingest.postgres_source import _require, _table_columns

    columns = _table_columns(connection, config)
    _require(columns, [config.time_column], config)
    time_kind = kind_of_pg(columns[config.time_column])
    if time_kind not in ("timestamp", "timestamptz"):
        raise IngestError(
            f"source {config.name!r}: time column {config.time_column!r} is "
            f"{columns[config.time_column]}, not a timestamp; store times as timestamptz"
        )
    time = sql.Identifier(config.time_column)
    naive = time_kind == "timestamp"
    params: list[object] = []
    if config.entity_column is None:
        entity: sql.Composable = sql.SQL("%s::text")
        params.append(config.entity)
    else:
        _require(columns, [config.entity_column], config)
        entity = sql.SQL("{}::text").format(sql.Identifier(config.entity_column))
    bounds: list[sql.Composable] = [sql.SQL(f"{f}({{}})").format(time) for f in ("min", "max")]
    if naive:  # wall time in the source's zone -> timestamptz
        bounds = [sql.SQL("({} AT TIME ZONE %s)").format(b) for b in bounds]
        params += [config.timezone, config.timezone]
    counted: list[sql.Composable] = []
    for op, value in ((">=", start), ("<", end)):
        if value is not None:
            target = "(%s::timestamptz AT TIME ZONE %s)" if naive else "%s::timestamptz"
            counted.append(sql.SQL("{} {} " + target).format(time, sql.SQL(op)))
            params.append(_utc(value).to_pydatetime())
            if naive:
                params.append(config.timezone)
    count = (
        sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(" AND ").join(counted))
        if counted
        else sql.SQL("count(*)")
    )
    where: sql.Composable = sql.SQL("")
    if config.layout == "long" and config.sensors is not None:
        _require(columns, [config.sensor_column], config)
        where = sql.SQL(" WHERE {}::text = ANY(%s)").format(sql.Identifier(config.sensor_column))
        params.append(list(config.sensors))
    query = sql.SQL(
        "SELECT {entity}, {first}, {last}, {count} FROM {table}{where} GROUP BY 1"
    ).format(
        entity=entity,
        first=bounds[0],
        last=bounds[1],
        count=count,
        table=config.table_identifier(),
        where=where,
    )
    rows = connection.execute(query, params).fetchall()
    entities = {
        str(name): EntitySpan(_utc(first), _utc(last), int(n))
        for name, first, last, n in sorted(rows, key=lambda r: str(r[0]))
        if name is not None and first is not None
    }
    return SourceSpan(
        source=f"{config.name} (table {config.table})",
        kind="postgres",
        entities=entities,
        start=start,
        end=end,
    )


def check_postgres_span(
    postgres: dict[str, Any],
    connection: psycopg.Connection,
    *,
    entities: Sequence[str] | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> SourceSpan:
    """Check a PostgreSQL source's entities and range on an open connection (one query).

    What ``eraflow.runs.preflight.check_config`` cannot do without a connection: call it once the
    source block's connection is open, before reading. ``postgres`` is the table and its
    columns (``PostgresSourceConfig`` as a dict). Raises ConfigError like :func:`check_span`;
    returns the span (bounds and rows per entity) for a caller that wants them.
    """
    from eraflow.stages.ingest.postgres_source import PostgresSourceConfig

    table = PostgresSourceConfig.parse(postgres)
    start = None if start is None else _utc(start)
    end = None if end is None else _utc(end)
    span = postgres_span(table, connection, start=start, end=end)
    check_span(span, entities=entities, start=start, end=end)
    return span


# -- the check --------------------------------------------------------------------------------


def check_span(
    span: SourceSpan,
    *,
    entities: Sequence[str] | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> None:
    """Refuse a run the source cannot feed, before any work, with a ConfigError saying the fix.

    Raises for an entity the source does not have, for a range in which the chosen entities
    (all, without ``entities``) hold no row, and for an asked-for entity with no row in the
    range (ingest would refuse it after reading). A range that overlaps the data in part passes.
    ``start`` and ``end`` must be those the span counted its rows in.
    """
    if (_micros(start), _micros(end)) != (_micros(span.start), _micros(span.end)):
        raise ValueError(
            f"the span counted rows in {_range(span.start, span.end)}, "
            f"not in {_range(start, end)}: build it for the range it checks"
        )
    known = sorted(span.entities)
    if entities is not None:
        unknown = sorted(set(entities) - set(known))
        if unknown:
            if span.kind == "simulator":
                raise ConfigError(
                    f"entities {unknown} are not simulated; the simulator has {known}: fix "
                    "--entities or --simulator.entities"
                )
            raise ConfigError(
                f"entities {unknown} are not in source {span.source!r}; it has {known}: "
                "fix --entities"
            )
    chosen = sorted(set(entities)) if entities is not None else known
    rows = {e: span.entities[e].rows for e in chosen}
    if not sum(rows.values()):
        raise ConfigError(f"no data in {_range(start, end)}: {_holds(span, chosen)}; {_fix(span)}")
    empty = [e for e, n in rows.items() if not n] if entities is not None else []
    if empty:
        raise ConfigError(
            f"entities {empty} have no data in {_range(start, end)}: {_holds(span, empty)}; "
            f"fix --entities or {_fix(span)}"
        )


def _when(value: pd.Timestamp) -> str:
    return f"{_utc(value):%Y-%m-%d %H:%M} UTC"


def _range(start: pd.Timestamp | None, end: pd.Timestamp | None) -> str:
    return (
        f"[{_when(start) if start is not None else 'the first data'}, "
        f"{_when(end) if end is not None else 'the last data'})"
    )


def _holds(span: SourceSpan, entities: list[str]) -> str:
    if span.kind == "simulator" and span.covers is not None:
        first, stop = span.covers
        return f"the simulator covers [{_when(first)}, {_when(stop)})"
    whose = f" {', '.join(entities)}" if len(entities) < len(span.entities) else ""
    parts = [span.entities[e] for e in entities]
    firsts = [p.first for p in parts if p.first is not None]
    lasts = [p.last for p in parts if p.last is not None]
    if not firsts or not lasts:
        return f"source {span.source!r} holds no rows" + (f" of{whose}" if whose else "")
    return (
        f"source {span.source!r} holds{whose} {min(firsts):%Y-%m-%d %H:%M} .. "
        f"{max(lasts):%Y-%m-%d %H:%M} UTC"
    )


def _fix(span: SourceSpan) -> str:
    if span.kind == "simulator":
        if span.start is None or span.end is None:
            return "choose --start/--end inside it, or set --simulator.start/--simulator.days"
        day = _utc(span.start).floor("D")
        days = max(math.ceil((_utc(span.end) - day) / pd.Timedelta(days=1)), 2)
        return (
            "choose --start/--end inside it, or simulate that range: "
            f"--simulator.start {day:%Y-%m-%d} --simulator.days {days}"
        )
    if span.first is None:
        return "check the source's files or table"
    return "choose --start/--end inside it"
