"""Read mapped source files into the canonical long form: (time UTC, entity, sensor, value)."""

from __future__ import annotations

import codecs
import copy
import csv
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from eraflow.common.errors import ConfigError, DataError, IngestError
from eraflow.stages.ingest.mapping import ColumnMap, MappingFile, OnDuplicate, SourceMapping
from eraflow.stages.ingest.timezones import localise_to_utc

LONG_COLUMNS = ["time", "entity", "sensor", "value", "source"]
Progress = Callable[[int, int, str], None]
"""Callback ``(done, total, label)``: the CLI draws a bar, a Prefect task an artifact."""


@dataclass
class SourceReport:
    """What reading one source did: counts a user can check against the raw files."""

    source: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    values: int = 0
    entities: list[str] = field(default_factory=list)
    sensors: list[str] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    non_numeric_values: dict[str, int] = field(default_factory=dict)
    empty_sensors: list[str] = field(default_factory=list)
    dropped_nonexistent: int = 0
    dropped_ambiguous: int = 0
    duplicates_merged: int = 0
    ragged_rows_skipped: int = 0
    first_time: pd.Timestamp | None = None
    last_time: pd.Timestamp | None = None


@dataclass
class IngestResult:
    """Canonical long rows of one source and its report."""

    frame: pd.DataFrame
    report: SourceReport


def empty_long() -> pd.DataFrame:
    """An empty frame with the canonical long schema and dtypes."""
    return pd.DataFrame(
        {
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "entity": pd.Series([], dtype="string"),
            "sensor": pd.Series([], dtype="string"),
            "value": pd.Series([], dtype="float64"),
            "source": pd.Series([], dtype="string"),
        }
    )


def source_files(mapping: SourceMapping, root: Path) -> list[Path]:
    """The files of one mapped source under ``root``.

    Raises IngestError for a glob that matches nothing, and ConfigError for a match whose
    resolved path leaves the resolved root (a symlink to elsewhere): the mapping's globs are
    checked when it loads, a link can only be seen here.
    """
    found: list[Path] = []
    inside = root.resolve()
    for pattern in mapping.files:
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise IngestError(f"source {mapping.name!r}: no file matches {pattern!r} under {root}")
        for path in matches:
            target = path.resolve()
            if not target.is_relative_to(inside):
                raise ConfigError(
                    f"source {mapping.name!r}: files pattern {pattern!r} matches {path}, which "
                    f"resolves to {target}, outside the data root {inside}: copy the file under "
                    "the data root, or point --data-root at the folder that holds it"
                )
        found.extend(matches)
    return list(dict.fromkeys(found))


def file_encoding(path: Path, encoding: str) -> str:
    """``encoding``, or ``"utf-8-sig"`` for a UTF-8 file that starts with a byte-order mark.

    Why: spreadsheet programs write UTF-8 CSVs with a BOM; read as plain UTF-8 the mark sticks
    to the first header name (the time column is then 'not found').
    """
    if codecs.lookup(encoding).name != "utf-8":
        return encoding
    with path.open("rb") as handle:
        start = handle.read(len(codecs.BOM_UTF8))
    return "utf-8-sig" if start == codecs.BOM_UTF8 else encoding


def _read_header(
    path: Path, mapping: SourceMapping, encoding: str | None = None
) -> list[list[str]]:
    if mapping.header_rows == 0:
        return []
    encoding = encoding or file_encoding(path, mapping.encoding)
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=mapping.delimiter)
            rows = [next(reader, []) for _ in range(mapping.header_rows)]
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not readable as {mapping.encoding}: {exc}") from exc
    return [[cell.strip() for cell in row] for row in rows]


# -- rows whose field count is not the file's -------------------------------------------------


@dataclass(frozen=True)
class RaggedRows:
    """The data rows of one CSV file whose field count is not the file's width.

    Why they matter: a row with one field too many (a decimal comma in a ','-separated file,
    an unquoted delimiter in a text) shifts every later value of the row one column right, and
    the values still parse; a row with too few is cut short. Either way values land under the
    wrong sensor, silently.

    ``expected`` is the header's field count (``by_header``), or for a file without a header
    the first data row's. ``lines`` are 1-based line numbers as a text editor counts them
    (header rows included) where each such row starts, ``fields`` their field counts, and
    ``records`` their 0-based record indices (header rows and blank lines counted), which is
    how pandas' ``skiprows`` addresses rows.
    """

    expected: int
    by_header: bool
    lines: tuple[int, ...]
    fields: tuple[int, ...]
    records: frozenset[int]

    def error(self, path: Path, mapping: SourceMapping) -> IngestError:
        """The refusal: the first such line, its field count, the expected one, and the fix."""
        count = len(self.lines)
        has = self.fields[0]
        against = "the header has" if self.by_header else "the first row has"
        return IngestError(
            f"{path}: line {self.lines[0]} has {has} field{'s' if has != 1 else ''}, "
            f"{against} {self.expected} ({count} such row{'s' if count != 1 else ''}); "
            f"{self._hint(mapping)}"
        )

    def _hint(self, mapping: SourceMapping) -> str:
        skip = 'or set on_ragged = "skip" to skip such rows'
        if self.fields[0] > self.expected:
            if mapping.delimiter == ",":
                return (
                    "a decimal comma in a ','-separated file? export it with a ';' delimiter "
                    f'and set delimiter = ";" and decimal = ",", {skip}'
                )
            return (
                f"a value holding an unquoted {mapping.delimiter!r}? quote it in the export, {skip}"
            )
        return f"a row cut short (a file still being written)? fix the export, {skip}"


def _arrow_encoding(encoding: str) -> str:
    """The encoding name pyarrow takes: it reads UTF-8 natively and skips a BOM itself."""
    return "utf8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


def _arrow_sees_ragged(
    path: Path, mapping: SourceMapping, encoding: str, width: int | None
) -> bool:
    """Whether pyarrow's tokenizer meets a row of another width (True also when it cannot tell).

    The fast filter: pyarrow tokenizes on every core and converts no column here (one column
    that is not in the file is asked for), so a clean file costs milliseconds (the Knud Jepsen
    year: about 50 ms for 4 files of 105k rows, under 1 % of reading them). What it flags is
    confirmed by :func:`ragged_rows`, which follows the csv module's (and pandas') quoting
    rules exactly: pyarrow ends a row at a quoted line break, for one.
    """
    flagged: list[int] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        flagged.append(row.actual_columns)
        return "skip"

    try:
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                skip_rows=mapping.header_rows,
                column_names=None if width is None else [f"f{i}" for i in range(width)],
                autogenerate_column_names=width is None,
                encoding=_arrow_encoding(encoding),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=mapping.delimiter, invalid_row_handler=invalid
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=["__no_column__"], include_missing_columns=True
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, LookupError):
        return True
    return bool(flagged)


def ragged_rows(path: Path, mapping: SourceMapping, width: int | None) -> RaggedRows:
    """Every data row of ``path`` whose field count is not ``width`` (None: the first row's).

    Exact, with the csv module's quoting rules (pandas' too): a quoted delimiter or line break
    is part of a value. Blank lines are no rows (both parsers skip them). Slow next to pyarrow,
    so the readers call it only when :func:`_arrow_sees_ragged` flags a file.
    """
    encoding = file_encoding(path, mapping.encoding)
    lines: list[int] = []
    fields: list[int] = []
    records: list[int] = []
    expected = width
    start = 1
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=mapping.delimiter)
            for index, row in enumerate(reader):
                line, start = start, reader.line_num + 1
                if index < mapping.header_rows or not row:
                    continue
                if expected is None:
                    expected = len(row)
                elif len(row) != expected:
                    lines.append(line)
                    fields.append(len(row))
                    records.append(index)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not readable as {mapping.encoding}: {exc}") from exc
    except csv.Error as exc:
        raise IngestError(f"{path}: line {start}: cannot parse as csv: {exc}") from exc
    return RaggedRows(
        expected=expected or 0,
        by_header=width is not None,
        lines=tuple(lines),
        fields=tuple(fields),
        records=frozenset(records),
    )


def check_ragged(
    path: Path, mapping: SourceMapping, width: int | None, *, flagged: bool
) -> RaggedRows | None:
    """Apply the mapping's ``on_ragged`` policy to a file the fast filter ``flagged``.

    Raises the IngestError of :meth:`RaggedRows.error` under ``on_ragged = "error"``; returns
    the rows to skip under ``"skip"``, and None when the file has no such row (or was not
    flagged). The reader and the span scan both end here, so they refuse the same line.
    """
    if not flagged:
        return None
    ragged = ragged_rows(path, mapping, width)
    if not ragged.lines:
        return None
    if mapping.on_ragged == "error":
        raise ragged.error(path, mapping)
    return ragged


def skip_rows(mapping: SourceMapping, ragged: RaggedRows | None) -> int | list[int]:
    """The ``skiprows`` pandas takes: the header rows, and the ragged rows being skipped."""
    if ragged is None:
        return mapping.header_rows
    return sorted(set(range(mapping.header_rows)) | ragged.records)


def _sniff_delimiter(path: Path, encoding: str) -> str | None:
    try:
        with path.open(encoding=file_encoding(path, encoding), errors="replace") as handle:
            sample = handle.read(4096)
        return csv.Sniffer().sniff(sample, delimiters=";,\t|").delimiter
    except csv.Error:
        return None


def _positions(names: Sequence[str] | None, ref: str | int, path: Path, what: str) -> int:
    if isinstance(ref, int):
        return ref
    if names is None:
        raise IngestError(f"{path}: {what} {ref!r} is addressed by name but the file has no header")
    hits = [i for i, name in enumerate(names) if name == ref]
    if not hits:
        raise IngestError(f"{path}: {what} {ref!r} not found; columns are {list(names)}")
    if len(hits) > 1:
        raise IngestError(
            f"{path}: {what} {ref!r} is ambiguous (positions {hits}); address it by 'index'"
        )
    return hits[0]


def _to_numeric(values: pd.Series, decimal: str) -> tuple[np.ndarray, int]:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan), 0
    text = values.astype("string").str.strip()
    if decimal != ".":
        text = text.str.replace(",", ".", regex=False)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = int((numbers.isna() & text.notna() & (text != "")).sum())
    return numbers.to_numpy(dtype="float64", na_value=np.nan), bad


def _parse_times(
    raw: pd.DataFrame, positions: list[int], mapping: SourceMapping, path: Path
) -> pd.DatetimeIndex:
    spec = mapping.time
    if len(positions) == 1:
        text = raw.iloc[:, positions[0]]
    else:
        text = raw.iloc[:, positions[0]].astype("string")
        for pos in positions[1:]:
            text = text + " " + raw.iloc[:, pos].astype("string")
    missing = text.isna() | (text.astype("string").str.strip() == "")
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0]) + mapping.header_rows + 1
        raise IngestError(f"{path}: line {row} has no timestamp in the time column(s)")
    if spec.unit is not None:
        numbers = pd.to_numeric(text, errors="coerce")
        parsed = pd.to_datetime(numbers, unit=spec.unit, utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(
            text.astype("string").str.strip(), format=spec.format, errors="coerce"
        )
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise IngestError(
            f"{path}: line {first + mapping.header_rows + 1}: timestamp {text.iloc[first]!r} "
            f"does not parse with format {spec.format or spec.unit or 'ISO'} "
            f"({int(bad.sum())} such rows)"
        )
    return pd.DatetimeIndex(parsed)


class LoadedTable(NamedTuple):
    """A file body with positional columns, its header names (None: no header), rows skipped."""

    table: pd.DataFrame
    names: list[str] | None
    ragged_skipped: int = 0


def _load_table(path: Path, mapping: SourceMapping) -> LoadedTable:
    """The file body with positional columns, and the header names if any.

    A CSV row whose field count is not the header's is refused or skipped by the mapping's
    ``on_ragged`` (see :class:`RaggedRows`); a UTF-8 byte-order mark is dropped.
    """
    names: list[str] | None
    if mapping.format == "parquet":
        table = pd.read_parquet(path)
        names = [str(c) for c in table.columns]
        table.columns = range(table.shape[1])
        return LoadedTable(table, names)
    encoding = file_encoding(path, mapping.encoding)
    if mapping.format == "json-readings":
        try:
            streams = json.loads(path.read_text(encoding=encoding))
            frames = [
                pd.DataFrame(
                    {
                        "uuid": stream["uuid"],
                        "time": [r[0] for r in stream["Readings"]],
                        "value": [r[1] for r in stream["Readings"]],
                    }
                )
                for stream in streams
            ]
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise IngestError(
                f"{path}: not a JSON list of {{uuid, Readings: [[time, value], ...]}}: {exc}"
            ) from exc
        table = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["uuid", "time", "value"])
        )
        names = list(table.columns)
        table.columns = range(table.shape[1])
        return LoadedTable(table, names)

    header = _read_header(path, mapping, encoding)
    names = header[mapping.name_row] if header else None
    expected = max(
        [c.index for c in mapping.columns if c.index is not None]
        + [p for p in mapping.time.columns if isinstance(p, int)]
        + [1]
    )
    if names is not None and len(names) <= max(expected, 1):
        guess = _sniff_delimiter(path, mapping.encoding)
        hint = f"; it looks {guess!r}-separated" if guess and guess != mapping.delimiter else ""
        raise IngestError(
            f"{path}: delimiter {mapping.delimiter!r} splits the header into {len(names)} "
            f"field(s), but the mapping needs more{hint}"
        )
    width = len(names) if names is not None else None
    # The ragged-row filter runs beside pandas' parse (both release the GIL): on a clean file,
    # the common case, the check costs no wall time where a second core is free.
    with ThreadPoolExecutor(max_workers=1) as beside:
        flagged = beside.submit(_arrow_sees_ragged, path, mapping, encoding, width)
        failure: IngestError | None = None
        try:
            table = _parse_body(path, mapping, encoding, names, mapping.header_rows)
        except IngestError as exc:  # a ragged row may be why: the check below says
            table, failure = pd.DataFrame(), exc
        suspect = flagged.result()
    ragged = check_ragged(path, mapping, width, flagged=suspect)
    if ragged is not None:  # on_ragged = "skip": parse again without those rows
        table = _parse_body(path, mapping, encoding, names, skip_rows(mapping, ragged))
    elif failure is not None:
        raise failure
    if table.shape[1] <= expected:
        guess = _sniff_delimiter(path, mapping.encoding)
        hint = f"; it looks {guess!r}-separated" if guess and guess != mapping.delimiter else ""
        raise IngestError(
            f"{path}: {table.shape[1]} column(s) with delimiter {mapping.delimiter!r}, "
            f"but the mapping refers to column {expected}{hint}"
        )
    return LoadedTable(table, names, len(ragged.lines) if ragged is not None else 0)


def _parse_body(
    path: Path,
    mapping: SourceMapping,
    encoding: str,
    names: list[str] | None,
    skip: int | list[int],
) -> pd.DataFrame:
    """A CSV file's body with pandas' C parser, positional columns, time columns as text."""
    try:
        return pd.read_csv(
            path,
            sep=mapping.delimiter,
            decimal="." if mapping.decimal == "either" else mapping.decimal,
            header=None,
            skiprows=skip,
            na_values=mapping.na_values,
            keep_default_na=False,
            encoding=encoding,
            dtype={i: "string" for i in mapping.time.columns if isinstance(i, int)},
            low_memory=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(
            f"{path}: cannot parse as {mapping.format} (delimiter {mapping.delimiter!r}): {exc}"
        ) from exc
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=range(len(names or [])))


def _wide_rows(
    table: pd.DataFrame,
    names: list[str] | None,
    times: pd.DatetimeIndex,
    keep: np.ndarray,
    mapping: SourceMapping,
    path: Path,
    report: SourceReport,
    used: set[int],
) -> list[pd.DataFrame]:
    entity_pos = (
        _positions(names, mapping.entity_column, path, "entity column")
        if mapping.entity_column
        else None
    )
    columns: list[tuple[ColumnMap, int]] = []
    if mapping.columns:
        for cmap in mapping.columns:
            pos = (
                cmap.index
                if cmap.index is not None
                else _positions(names, cmap.column or "", path, "column")
            )
            if (
                cmap.index is not None
                and cmap.column is not None
                and names is not None
                and (pos >= len(names) or names[pos] != cmap.column)
            ):
                found = names[pos] if pos < len(names) else "<none>"
                raise IngestError(
                    f"{path}: column {pos} is {found!r}, the mapping expects {cmap.column!r} "
                    "(has the export changed?)"
                )
            columns.append((cmap, pos))
    else:
        if names is None:
            raise IngestError(f"{path}: no header and no column mapping: cannot name sensors")
        skip = used | ({entity_pos} if entity_pos is not None else set())
        columns = [
            (ColumnMap(sensor=names[i], index=i), i) for i in range(table.shape[1]) if i not in skip
        ]
    mapped = (
        {pos for _, pos in columns} | used | ({entity_pos} if entity_pos is not None else set())
    )
    if names is not None:
        for i, name in enumerate(names):
            label = name or f"<column {i}>"
            if i not in mapped and i < table.shape[1] and label not in report.unmapped_columns:
                report.unmapped_columns.append(label)

    kept_times = times[keep]
    entity_values = (
        table.iloc[:, entity_pos].astype("string").to_numpy()[keep]
        if entity_pos is not None
        else None
    )
    pieces = []
    for cmap, pos in columns:
        values, bad = _to_numeric(table.iloc[:, pos], mapping.decimal)
        if bad:
            key = f"{path.name}:{cmap.sensor}"
            report.non_numeric_values[key] = report.non_numeric_values.get(key, 0) + bad
            non_empty = int(table.iloc[:, pos].notna().sum())
            if bad > 0.5 * max(non_empty, 1):
                sample = table.iloc[:, pos].dropna().iloc[0]
                raise IngestError(
                    f"{path}: column {pos} ({cmap.sensor}) is not numeric: e.g. {sample!r} "
                    f"(decimal mark {mapping.decimal!r}; {bad} of {non_empty} values bad)"
                )
        values = values[keep] * cmap.scale + cmap.offset
        present = ~np.isnan(values)
        entity = cmap.entity or mapping.entity
        pieces.append(
            pd.DataFrame(
                {
                    "time": kept_times[present],
                    "entity": entity_values[present]
                    if entity_values is not None and not cmap.entity
                    else entity,
                    "sensor": cmap.sensor,
                    "value": values[present],
                }
            )
        )
    return pieces


def _long_rows(
    table: pd.DataFrame,
    names: list[str] | None,
    times: pd.DatetimeIndex,
    keep: np.ndarray,
    mapping: SourceMapping,
    path: Path,
    report: SourceReport,
) -> list[pd.DataFrame]:
    sensor_pos = _positions(names, mapping.sensor_column or "", path, "sensor column")
    value_pos = _positions(names, mapping.value_column or "", path, "value column")
    entity_pos = (
        _positions(names, mapping.entity_column, path, "entity column")
        if mapping.entity_column
        else None
    )
    sensors = table.iloc[:, sensor_pos].astype("string").to_numpy()[keep]
    values, bad = _to_numeric(table.iloc[:, value_pos], mapping.decimal)
    if bad:
        report.non_numeric_values[path.name] = report.non_numeric_values.get(path.name, 0) + bad
    frame = pd.DataFrame(
        {
            "time": times[keep],
            "entity": (
                table.iloc[:, entity_pos].astype("string").to_numpy()[keep]
                if entity_pos is not None
                else mapping.entity
            ),
            "source_sensor": sensors,
            "value": values[keep],
        }
    )
    if mapping.columns:
        lookup = {c.column if c.column is not None else str(c.index): c for c in mapping.columns}
        unknown = sorted(set(frame["source_sensor"].dropna()) - set(lookup))
        report.unmapped_columns.extend(u for u in unknown if u not in report.unmapped_columns)
        frame = frame[frame["source_sensor"].isin(list(lookup))]
        scale = frame["source_sensor"].map({k: c.scale for k, c in lookup.items()})
        offset = frame["source_sensor"].map({k: c.offset for k, c in lookup.items()})
        frame = frame.assign(
            sensor=frame["source_sensor"].map({k: c.sensor for k, c in lookup.items()}),
            value=frame["value"] * scale.astype(float) + offset.astype(float),
        )
        entity_override = frame["source_sensor"].map({k: c.entity for k, c in lookup.items()})
        frame["entity"] = entity_override.where(entity_override.notna(), frame["entity"])
    else:
        frame = frame.assign(sensor=frame["source_sensor"])
    frame = frame.drop(columns="source_sensor")
    return [frame[frame["value"].notna()]]


def resolve_duplicates(
    frame: pd.DataFrame, *, source: str, policy: OnDuplicate, report: SourceReport
) -> pd.DataFrame:
    """Apply a source's duplicate policy to rows sharing (entity, sensor, time).

    ``"error"`` names the first duplicate; ``"mean"``, ``"first"`` and ``"last"`` merge them
    and count the merged rows in the report. Shared by the file and PostgreSQL readers.
    """
    keys = ["entity", "sensor", "time"]
    dup = frame.duplicated(keys, keep=False)
    if not dup.any():
        return frame
    if policy == "error":
        first = frame[dup].sort_values(keys).iloc[0]
        raise DataError(
            f"source {source!r}: {int(dup.sum())} rows share a timestamp with another row "
            f"of the same source, first {first['time']} ({first['entity']}/{first['sensor']}); "
            "fix the source or set on_duplicate = 'mean' | 'first' | 'last'"
        )
    report.duplicates_merged = int(dup.sum() - frame[dup].drop_duplicates(keys).shape[0])
    grouped = frame.groupby(keys, sort=False, observed=True)["value"]
    return getattr(grouped, policy)().reset_index()


def read_source(
    mapping: SourceMapping,
    root: str | Path,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Read every file of one source into canonical long rows within [start, end) UTC.

    Rows come back sorted by (entity, sensor, time); values are float64; missing values are
    absent rows. Errors name the file and line and what to change in the mapping.
    """
    root = Path(root)
    report = SourceReport(source=mapping.name)
    files = source_files(mapping, root)
    pieces: list[pd.DataFrame] = []
    for done, path in enumerate(files):
        table, names, ragged = _load_table(path, mapping)
        report.ragged_rows_skipped += ragged
        report.files.append(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
        report.rows_read += len(table)
        time_refs = mapping.time.columns
        if mapping.format == "json-readings":
            time_refs = ["time"]
        positions = [_positions(names, ref, path, "time column") for ref in time_refs]
        if not len(table):
            continue
        naive = _parse_times(table, positions, mapping, path)
        if naive.tz is None:
            local = localise_to_utc(
                naive,
                timezone=mapping.time.timezone,
                ambiguous=mapping.time.ambiguous,
                nonexistent=mapping.time.nonexistent,
                where=str(path),
            )
            times = local.utc
            report.dropped_nonexistent += local.dropped_nonexistent
            report.dropped_ambiguous += local.dropped_ambiguous
        else:
            times = naive.tz_convert("UTC")
        keep = ~np.asarray(times.isna())
        if start is not None:
            keep &= np.asarray(times >= start)
        if end is not None:
            keep &= np.asarray(times < end)
        if mapping.layout == "long" or mapping.format == "json-readings":
            if mapping.format == "json-readings":
                mapping = mapping.model_copy(
                    update={"sensor_column": "uuid", "value_column": "value"}
                )
            pieces += _long_rows(table, names, times, keep, mapping, path, report)
        else:
            pieces += _wide_rows(table, names, times, keep, mapping, path, report, set(positions))
        if progress is not None:
            progress(done + 1, len(files), f"{mapping.name}: {path.name}")

    frame = pd.concat(pieces, ignore_index=True) if pieces else empty_long()
    frame = frame[["time", "entity", "sensor", "value"]]
    frame = resolve_duplicates(
        frame, source=mapping.name, policy=mapping.on_duplicate, report=report
    )
    mapped = {c.sensor for c in mapping.columns}
    report.empty_sensors = sorted(mapped - set(map(str, frame["sensor"].unique())))  # no value
    return finish_long(frame, source=mapping.name, report=report)


def finish_long(frame: pd.DataFrame, *, source: str, report: SourceReport) -> IngestResult:
    """Canonical dtypes and order of long rows, and the report's counts (every reader ends here)."""
    frame = frame[["time", "entity", "sensor", "value"]].astype(
        {"entity": "string", "sensor": "string", "value": "float64"}
    )
    frame["time"] = frame["time"].astype("datetime64[us, UTC]")
    frame["source"] = pd.Series(source, index=frame.index, dtype="string")
    frame = frame.sort_values(["entity", "sensor", "time"], kind="stable").reset_index(drop=True)
    report.values = len(frame)
    report.entities = sorted(frame["entity"].unique().tolist())
    report.sensors = sorted(frame["sensor"].unique().tolist())
    if len(frame):
        report.first_time = frame["time"].min()
        report.last_time = frame["time"].max()
    return IngestResult(frame=frame[LONG_COLUMNS], report=report)


def read_mapping(
    mapping: MappingFile,
    root: str | Path,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    sources: Sequence[str] | None = None,
    progress: Progress | None = None,
    reuse: bool = False,
) -> list[IngestResult]:
    """Read several sources of one mapping file (optionally only the named ones).

    With ``reuse``, each source is parsed whole once per process and sliced for every later
    read of another range (see :func:`_read_cached`): what a chunked backfill wants.
    """
    chosen = mapping.sources
    if sources is not None:
        known = {s.name for s in mapping.sources}
        missing = sorted(set(sources) - known)
        if missing:
            raise IngestError(f"unknown source(s) {missing}; the mapping has {sorted(known)}")
        chosen = [s for s in mapping.sources if s.name in set(sources)]
    if not reuse:
        return [read_source(s, root, start=start, end=end, progress=progress) for s in chosen]
    return [_read_cached(s, Path(root), start, end, progress) for s in chosen]


_LAST_READ: dict[tuple[str, ...], IngestResult] = {}
_LAST_READ_LOCK = threading.Lock()
CACHE_MAX_VALUES = 30_000_000
"""Most values a source may hold to be kept for the next read (about 1 GB)."""


def _read_cached(
    mapping: SourceMapping,
    root: Path,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    progress: Progress | None,
) -> IngestResult:
    """Read a whole source once per process, then slice it by [start, end).

    Why: a chunked backfill runs its chunks in one process, and climate-computer exports are
    often one file per year: every weekly chunk would parse the same year again. The source is
    parsed without a range (same rows inside any range: localisation, DST rules and duplicate
    handling are per row) and kept while its files' names, sizes and times are unchanged.
    """
    files = source_files(mapping, root)
    stamp = tuple(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    key = (mapping.model_dump_json(), *stamp)
    with _LAST_READ_LOCK:
        whole = _LAST_READ.get(key)
    if whole is None:
        whole = read_source(mapping, root, progress=progress)
        if len(whole.frame) <= CACHE_MAX_VALUES:
            with _LAST_READ_LOCK:
                stale = [k for k in _LAST_READ if k[0] == key[0]]
                for k in stale:
                    del _LAST_READ[k]
                _LAST_READ[key] = whole
    elif progress is not None:
        progress(len(files), len(files), f"{mapping.name}: parsed earlier in this process")
    frame = whole.frame
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["time"] >= start).to_numpy()
    if end is not None:
        keep &= (frame["time"] < end).to_numpy()
    part = frame[keep].reset_index(drop=True)  # still canonical: a slice keeps dtypes, order
    report = copy.copy(whole.report)
    report.values = len(part)
    report.entities = sorted(part["entity"].unique().tolist())
    report.sensors = sorted(part["sensor"].unique().tolist())
    report.first_time = part["time"].min() if len(part) else None
    report.last_time = part["time"].max() if len(part) else None
    return IngestResult(frame=part, report=report)
