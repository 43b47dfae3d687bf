"""A Parquet directory store: one dataset folder per table, partitioned by owner and key range.

Layout (``<owner>`` is the entity or scope as a safe folder name, see :func:`entity_slug`):

- ``grid/<owner>/<YYYY-MM>.parquet``, ``coverage/<owner>/<YYYY-MM>.parquet``: by month;
- ``eras/<owner>/<level>.parquet``, ``feature_ledger/...``, ``selection/...``: by level;
- ``features/<owner>/<level>/<era_id>-<stage>.parquet``: one file per era and stage;
- ``feature_matrix/<scope>/<entity>/<level>.parquet``.

A write touches only the files of its key range. It reads each, drops the rows of the range,
adds the new rows and writes the result to a temporary file beside it; only when every file of
the range is written (or an error has removed the temporary files, leaving every file old) are
they moved into place with ``os.replace``: a crash leaves each file old or new, never
half-written. Every file of a table has the table's one declared schema, so
``pandas.read_parquet("<root>/<table>")`` reads exactly the current rows, and no write ever
rewrites other files to unify schemas. Reads list the files of the key range and push the rest
of the range down as a ``pyarrow.dataset`` filter.

Linked tables: ``selection`` and ``feature_matrix`` (whose columns are named by the selection)
change together. Their folders are symbolic links, ``<root>/selection ->
.scoped/current/selection`` and ``<root>/feature_matrix -> .scoped/current/feature_matrix``,
and ``.scoped/current`` links to one version folder ``.scoped/v-<id>`` holding both tables. A
write of either builds a new version (hard links to the unchanged files, new files for its key
ranges), then switches ``current`` with one ``os.replace`` of a link: every reader, including
``pandas.read_parquet("<root>/selection")``, sees the pair before or after the switch, never a
mix, and a kill before the switch leaves the old pair. The old version is removed after the
switch; a killed writer's version, temporary links and files are swept by the next write.
The library's reads resolve ``current`` once, so a read of both tables
(:meth:`ParquetStore.read_many`) is of one version.

Locks: writers of one owner's files (threads, or processes on one host) hold an exclusive
``flock`` on the owner's folder for their read-modify-write (linked tables: one lock on
``.scoped``); readers need none (files are replaced atomically). Every lock is waited for at
most ``lock_timeout`` seconds, then :class:`~eraflow.store.locks.LockTimeoutError` names the
lock file and its holder. Hidden files and folders (``.lock``, ``.owner``, ``.scoped``,
``.quarantine``, temporary ``.*.tmp``) are ignored by readers.

Unreadable files: see :mod:`eraflow.store.quarantine`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from eraflow.common.errors import StoreError
from eraflow.store.arrow import (
    empty_frame,
    key_filter,
    key_order,
    sort_by_key,
    to_arrow,
    to_frame,
)
from eraflow.store.base import Key, Range, Write, check_key, check_rows, check_writes
from eraflow.store.crash import crash_point
from eraflow.store.locks import file_lock
from eraflow.store.names import entity_slug
from eraflow.store.quarantine import (
    CorruptPartitionError,
    Partition,
    covers,
    file_key,
    partition_of,
    quarantine_path,
    rerun_text,
    unreadable_message,
)
from eraflow.store.tables import ENGINE_STAGES, Table, table

logger = logging.getLogger(__name__)

OWNER_FILE = ".owner"
LINKED = ("selection", "feature_matrix")
"""Tables committed together, as one version (see the module docstring)."""
SCOPED = ".scoped"
CURRENT = "current"
_READ_ERRORS = (pa.ArrowException, OSError)
T = TypeVar("T")


@contextmanager
def exclusive(lock_file: Path, timeout: float = 30.0, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (made when absent), waiting ``timeout`` s at most."""
    with file_lock(lock_file, timeout=timeout, what=what):
        yield


def _write_temporary(data: pa.Table, path: Path) -> Path:
    """``data`` in a hidden temporary file beside ``path`` (moved into place later).

    Only label columns are dictionary-encoded: Parquet's default also hashes every float
    (a feature value repeats little); on the year's 20.6 M feature rows that took 13 % more
    of the writer's CPU and gave 14 % larger files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    labels = [
        f.name
        for f in data.schema
        if pa.types.is_dictionary(f.type)
        or pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
    ]
    try:
        pq.write_table(data, tmp, compression="zstd", use_dictionary=labels)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_file(spec: Table, path: Path) -> pa.Table:
    """One file of ``spec`` in its schema; columns added to the table later read as null."""
    try:
        return pq.read_table(path, schema=spec.schema)
    except ValueError:
        if not spec.added:
            raise
    data = pq.read_table(path)
    for name in spec.added:
        if name not in data.column_names:
            field = spec.schema.field(name)
            data = data.append_column(field, pa.nulls(len(data), field.type))
    return data.select(spec.names).cast(spec.schema)


def unreadable_files(spec: Table, files: Sequence[Path]) -> list[tuple[Path, str]]:
    """The files (of ``spec``) that cannot be read whole, with why; absent files are skipped."""
    bad = []
    for path in files:
        try:
            read_file(spec, path)
        except FileNotFoundError:
            continue
        except _READ_ERRORS as exc:
            bad.append((path, _reason(exc)))
    return bad


@dataclass(frozen=True)
class Quarantined:
    """A file moved aside because it could not be read, and what rewrites its rows."""

    table: str
    owner: str
    path: Path
    moved_to: Path
    key: Key
    rerun: str


@dataclass
class _Plan:
    """Phase one of a write: new files written beside the old, nothing replaced yet."""

    spec: Table
    key: Key
    folder: Path
    table_dir: Path
    removed: int = 0
    writes: list[tuple[Path, Path]] = field(default_factory=list)
    unlinks: list[Path] = field(default_factory=list)
    quarantine: list[tuple[Path, Partition]] = field(default_factory=list)

    def discard(self) -> None:
        for tmp, _ in self.writes:
            tmp.unlink(missing_ok=True)


def _link_tree(source: Path, target: Path) -> None:
    """Hard links to ``source``'s files (markers, not locks or temporaries) under ``target``."""
    for folder, subfolders, names in os.walk(source):
        here = target / Path(folder).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in names:
            if name.startswith(".") and name != OWNER_FILE:
                continue
            try:
                os.link(Path(folder) / name, here / name)
            except OSError:  # a file system without hard links: a copy is as good, slower
                shutil.copy2(Path(folder) / name, here / name)


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _values(condition: object) -> list[object] | None:
    """The listed values of an equality or membership condition (None for ranges/absent)."""
    if condition is None or isinstance(condition, Range):
        return None
    if isinstance(condition, list | tuple | set | frozenset):
        return list(condition)
    return [condition]


def _months(low: object, high: object) -> list[str] | None:
    if low is None or high is None:
        return None
    first = pd.Timestamp(low).tz_convert(None).to_period("M")
    last = (pd.Timestamp(high) - pd.Timedelta(1, "us")).tz_convert(None).to_period("M")
    if last < first:
        return []
    return [str(m) for m in pd.period_range(first, last, freq="M")]


class ParquetStore:
    """Results in a local folder (the embedded default); see the module docstring.

    Parameters
    ----------
    root
        The store folder (created on first write).
    lock_timeout
        Seconds a write waits for a lock held by another writer before it fails with a
        (retried) :class:`~eraflow.store.locks.LockTimeoutError` naming the holder; the same
        setting as the PostgreSQL store's.
    """

    def __init__(self, root: str | Path, *, lock_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.lock_timeout = float(lock_timeout)

    def __enter__(self) -> ParquetStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: files are opened per call."""

    def __repr__(self) -> str:
        return f"ParquetStore({self.describe()!r})"

    def describe(self) -> str:
        """The store folder."""
        return str(self.root.resolve())

    def table_path(self, name: str) -> Path:
        """The dataset folder of table ``name``."""
        return self.root / table(name).name

    # layout ---------------------------------------------------------------------------------
    def _owner_dir(self, spec: Table, owner: str, base: Path | None = None) -> Path:
        return (base if base is not None else self.root) / spec.name / entity_slug(owner)

    def _rows_by_file(self, spec: Table, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Row positions per file (relative to the owner's folder), grouped on few values.

        Grouping on the partition columns (a handful of months, levels or eras) instead of
        building a file name per row keeps a write of millions of rows cheap.
        """
        if spec.partition == "month":
            assert spec.time_column is not None
            times = pd.DatetimeIndex(pd.to_datetime(rows[spec.time_column], utc=True))
            parts = pd.DataFrame({"y": times.year, "m": times.month})
            name = "{0:04d}-{1:02d}.parquet"
        elif spec.partition == "level":
            parts, name = rows[["level"]], "{0}.parquet"
        elif spec.partition == "entity-level":
            parts, name = rows[["entity", "level"]], "{0}/{1}.parquet"
        else:
            parts = pd.DataFrame(
                {
                    "level": rows["level"],
                    "era": rows["era_id"].to_numpy(dtype=np.int64),
                    "engine": rows["engine"],
                }
            )
            name = "{0}/{1}-{2}.parquet"
        out: dict[str, list[np.ndarray]] = {}
        # grouped on the labels as they come (categorical codes): no string per row
        groups = parts.groupby(list(parts.columns), sort=False, observed=True).indices
        for values, index in groups.items():
            values = values if isinstance(values, tuple) else (values,)
            if spec.partition == "entity-level":
                values = (entity_slug(str(values[0])), values[1])
            elif spec.partition == "era":
                values = (values[0], values[1], ENGINE_STAGES.get(values[2], values[2]))
            out.setdefault(name.format(*values), []).append(index)
        return {file: np.sort(np.concatenate(parts_)) for file, parts_ in out.items()}

    def _key_files(self, spec: Table, key: Key, base: Path | None = None) -> list[Path]:
        """Existing files that may hold rows of ``key`` (a superset; the filter does the rest)."""
        folder = self._owner_dir(spec, key.owner, base)
        if not folder.is_dir():
            return []
        levels = _values(key.condition("level"))
        level_globs = [str(v) for v in levels] if levels is not None else ["*"]
        if spec.partition == "month":
            assert spec.time_column is not None
            span = key.condition(spec.time_column)
            months = _months(span.low, span.high) if isinstance(span, Range) else None
            names = [f"{m}.parquet" for m in months] if months is not None else ["*.parquet"]
        elif spec.partition == "level":
            names = [f"{level}.parquet" for level in level_globs]
        elif spec.partition == "entity-level":
            entities = _values(key.condition("entity"))
            folders = [entity_slug(str(e)) for e in entities] if entities is not None else ["*"]
            names = [f"{f}/{level}.parquet" for f in folders for level in level_globs]
        else:
            ids = _values(key.condition("era_id"))
            engines = _values(key.condition("engine"))
            stages = (
                sorted({ENGINE_STAGES.get(str(e), str(e)) for e in engines})
                if engines is not None
                else ["*"]
            )
            id_globs = [str(int(str(i))) for i in ids] if ids is not None else ["*"]
            names = [
                f"{level}/{i}-{stage}.parquet"
                for level in level_globs
                for i in id_globs
                for stage in stages
            ]
        found: set[Path] = set()
        for name in names:
            if "*" in name:
                found.update(p for p in folder.glob(name) if not p.name.startswith("."))
            elif (folder / name).is_file():
                found.add(folder / name)
        return sorted(found)

    def _table_files(self, spec: Table, base: Path | None = None) -> list[Path]:
        """Every data file of the table (hidden files and folders left out), sorted."""
        folder = (base if base is not None else self.root) / spec.name
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.rglob("*.parquet")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )

    def _dataset(self, spec: Table, files: list[Path]) -> ds.Dataset:
        return ds.dataset([str(f) for f in files], schema=spec.schema, format="parquet")

    def _load(
        self, spec: Table, files: list[Path], expr: pc.Expression | None, columns: list[str]
    ) -> pa.Table:
        """The filtered rows of ``files``; an unreadable file is named (CorruptPartitionError)."""
        try:
            return self._dataset(spec, files).to_table(filter=expr, columns=columns)
        except _READ_ERRORS:
            bad = unreadable_files(spec, files)
            if bad:
                raise CorruptPartitionError(
                    unreadable_message(self.root, spec.name, bad), [p for p, _ in bad]
                ) from None
            raise

    # linked tables (selection, feature_matrix) ---------------------------------------------
    def _snapshot(self) -> Path:
        """The folder holding the linked tables' folders now: a version, or the root."""
        target = _readlink(self.root / SCOPED / CURRENT)
        if target is None or not self._linked():
            return self.root  # an older store (or one being converted): its folders are current
        return self.root / SCOPED / target

    def _as_of_one_version(self, names: Sequence[str], read: Callable[[Path], T]) -> T:
        """``read(base)`` with every linked table in ``names`` read from one version.

        A writer retires the version it replaced once it has switched (renames it away, then
        deletes it). A read whose version is still in place afterwards read all of it; one
        whose version was retired meanwhile may have missed files, and is repeated on the
        new version.
        """
        if not any(table(n).name in LINKED for n in names):
            return read(self.root)
        for _ in range(50):
            base = self._snapshot()
            try:
                result = read(base)
            except _READ_ERRORS:
                if base == self.root or base.is_dir():
                    raise
                continue
            if base == self.root or base.is_dir():
                return result
        raise StoreError(
            f"{self.root}: the selection and feature matrix changed under 50 reads in a row; "
            "read again when the writers are done"
        )

    def _base(self, spec: Table, snapshot: Path) -> Path:
        """Where ``spec``'s folder is read from, given the snapshot of the linked tables."""
        if spec.name not in LINKED:
            return self.root
        if snapshot == self.root and not (self.root / spec.name).exists():
            # a conversion to links killed between moving a folder away and linking it
            return self._current_version() or self.root
        return snapshot

    # reads ----------------------------------------------------------------------------------
    def read(
        self, name: str, key: Key | None = None, *, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``key`` (None: every owner), in primary-key order."""
        return self._as_of_one_version([name], lambda base: self._read(base, name, key, columns))

    def _read(
        self, snapshot: Path, name: str, key: Key | None, columns: Sequence[str] | None
    ) -> pd.DataFrame:
        spec = table(name)
        base = self._base(spec, snapshot)
        wanted = list(columns) if columns is not None else spec.names
        for column in wanted:
            spec.kind(column)
        if key is None:
            files, expr = self._table_files(spec, base), None
        else:
            check_key(spec, key)
            files, expr = self._key_files(spec, key, base), key_filter(spec, key)
        if not files:
            return empty_frame(spec, wanted)
        data = sort_by_key(spec, self._load(spec, files, expr, spec.names))
        return to_frame(spec, data, wanted)

    def read_many(self, reads: Sequence[tuple[str, Key]]) -> list[pd.DataFrame]:
        """The rows of each (table, key); the linked tables all from one version."""
        return self._as_of_one_version(
            [name for name, _ in reads],
            lambda base: [self._read(base, name, key, None) for name, key in reads],
        )

    def read_batches(
        self, name: str, key: Key, *, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``key`` as arrow record batches (file by file, unsorted)."""
        spec = table(name)
        check_key(spec, key)
        for column in columns:
            spec.kind(column)
        if spec.name in LINKED:  # small tables: read as of one version, then hand out

            def load(base: Path) -> pa.Table | None:
                files = self._key_files(spec, key, base)
                return (
                    self._load(spec, files, key_filter(spec, key), list(columns)) if files else None
                )

            data = self._as_of_one_version([name], load)
            if data is not None:
                yield from data.to_batches()
            return
        files = self._key_files(spec, key)
        if not files:
            return
        try:
            yield from self._dataset(spec, files).to_batches(
                columns=list(columns), filter=key_filter(spec, key)
            )
        except _READ_ERRORS:
            bad = unreadable_files(spec, files)
            if bad:
                raise CorruptPartitionError(
                    unreadable_message(self.root, spec.name, bad), [p for p, _ in bad]
                ) from None
            raise

    def owners(self, name: str) -> list[str]:
        """Owners with a folder in the table (their names as written, from ``.owner``)."""
        spec = table(name)
        return self._as_of_one_version([name], lambda base: self._owners(spec, base))

    def _owners(self, spec: Table, snapshot: Path) -> list[str]:
        folder = self._base(spec, snapshot) / spec.name
        if not folder.is_dir():
            return []
        found = []
        for child in folder.iterdir():
            marker = child / OWNER_FILE
            if child.is_dir() and marker.is_file() and any(child.rglob("*.parquet")):
                found.append(marker.read_text(encoding="utf-8"))
        return sorted(found)

    # writes ---------------------------------------------------------------------------------
    def replace(self, name: str, frame: pd.DataFrame, key: Key) -> int:
        """Delete the rows of ``key`` and insert ``frame``; each touched file atomically."""
        spec = table(name)
        check_key(spec, key)
        rows = check_rows(spec, frame, key)
        if spec.name in LINKED:
            self._commit_linked([(spec, key, rows)])
        else:
            self._write(spec, key, rows)
        return len(rows)

    def delete(self, name: str, key: Key) -> int:
        """Delete the rows of ``key``; returns how many were removed."""
        spec = table(name)
        check_key(spec, key)
        if spec.name in LINKED:
            return self._commit_linked([(spec, key, None)])[0][0]
        return self._write(spec, key, None)[0]

    def replace_many(self, writes: Sequence[Write]) -> list[int]:
        """Replace (None: delete) each table's key range in one commit (the linked tables).

        Several tables commit together only when all are linked (``selection`` and
        ``feature_matrix``): they are one version, switched at once. Returns the rows
        written per table (deleted, for a delete).
        """
        checked = check_writes(writes)
        linked = [spec.name in LINKED for spec, _, _ in checked]
        if all(linked):
            removed, _ = self._commit_linked(checked)
        elif len(checked) == 1:
            removed = [self._write(*checked[0])[0]]
        else:
            raise StoreError(
                "the Parquet store commits several tables at once only for the linked "
                f"tables {list(LINKED)}; write {[s.name for s, _, _ in checked]} one by one"
            )
        return [
            len(rows) if rows is not None else gone
            for (_, _, rows), gone in zip(checked, removed, strict=True)
        ]

    def _write(
        self, spec: Table, key: Key, rows: pd.DataFrame | None
    ) -> tuple[int, list[Quarantined]]:
        """One table's key range under its owner's lock: plan (new files beside), then apply."""
        folder = self._owner_dir(spec, key.owner)
        with exclusive(folder / ".lock", self.lock_timeout, f"{spec.name} of {key.owner}"):
            plan = self._plan(spec, key, rows, self.root)
            return plan.removed, self._apply(plan)

    def _plan(self, spec: Table, key: Key, rows: pd.DataFrame | None, base: Path) -> _Plan:
        """Write the key range's new files beside the old ones; replace nothing yet.

        Raises (leaving every file as it was) when a file of the range cannot be read and the
        range does not cover it whole; a covered unreadable file is marked for quarantine.
        """
        folder = self._owner_dir(spec, key.owner, base)
        plan = _Plan(spec, key, folder, base / spec.name)
        new_by_file: dict[Path, pa.Table] = {}
        if rows is not None and len(rows):
            data = to_arrow(spec, rows)
            rank = np.empty(len(rows), dtype=np.int64)  # each row's place in key order
            rank[key_order(spec, data)] = np.arange(len(rows))
            for file_name, positions in self._rows_by_file(spec, rows).items():
                ordered = positions[np.argsort(rank[positions], kind="stable")]
                new_by_file[folder / file_name] = data.take(pa.array(ordered))
        expr = key_filter(spec, key)
        paths = sorted(set(self._key_files(spec, key, base)) | set(new_by_file))
        for parent in {p.parent for p in paths}:
            # A killed writer's leftovers: no other writer of this owner runs (the lock).
            for stale in parent.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        try:
            for path in paths:
                kept = None
                if path.is_file():
                    old = self._old_rows(plan, path)
                    if old is not None:
                        hit = pc.fill_null(
                            ds.dataset(old).to_table(columns={"hit": expr}).column("hit"), False
                        )
                        plan.removed += int(pc.sum(hit).as_py() or 0)
                        if not pc.any(hit).as_py() and path not in new_by_file:
                            continue
                        kept = old.filter(pc.invert(hit))
                parts = [t for t in (kept, new_by_file.get(path)) if t is not None and t.num_rows]
                if not parts:
                    if path.is_file() and not any(path == q for q, _ in plan.quarantine):
                        plan.unlinks.append(path)
                    continue
                # new rows alone come in key order already (one sort of the whole write)
                fresh = kept is None or not kept.num_rows
                merged = parts[0] if fresh else sort_by_key(spec, pa.concat_tables(parts))
                plan.writes.append((_write_temporary(merged, path), path))
        except BaseException:
            plan.discard()
            raise
        return plan

    def _old_rows(self, plan: _Plan, path: Path) -> pa.Table | None:
        """A file's rows; None for an unreadable file the write covers (to quarantine)."""
        spec = plan.spec
        try:
            return read_file(spec, path)
        except FileNotFoundError:
            return None
        except _READ_ERRORS as exc:
            part = partition_of(spec, path.relative_to(plan.table_dir))
            if part is None or not covers(part, plan.key):
                raise CorruptPartitionError(
                    unreadable_message(self.root, spec.name, [(path, _reason(exc))])
                    + f". This write ({spec.name}, {plan.key}) covers only part of it and "
                    "was not made; nothing changed",
                    [path],
                ) from None
            plan.quarantine.append((path, part))
            return None

    def _apply(self, plan: _Plan) -> list[Quarantined]:
        """Phase two: move unreadable files aside, new files into place, emptied files away."""
        marker = plan.folder / OWNER_FILE
        if plan.writes and not marker.is_file():
            marker.write_text(plan.key.owner, encoding="utf-8")
        moved = []
        for path, part in plan.quarantine:
            relative = path.relative_to(plan.table_dir)
            target = quarantine_path(self.root, plan.spec.name, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            record = Quarantined(
                table=plan.spec.name,
                owner=plan.key.owner,
                path=Path(plan.spec.name) / relative,
                moved_to=target,
                key=file_key(part, plan.key.owner),
                rerun=rerun_text(part, plan.key.owner),
            )
            logger.warning(
                "moved unreadable %s to %s (this write of %s replaces its rows); to restore "
                "the rest of its range: %s",
                record.path,
                target,
                plan.key,
                record.rerun,
            )
            moved.append(record)
        for tmp, path in plan.writes:
            os.replace(tmp, path)
        for path in plan.unlinks:
            path.unlink(missing_ok=True)
        return moved

    def _commit_linked(
        self, writes: Sequence[tuple[Table, Key, pd.DataFrame | None]]
    ) -> tuple[list[int], list[Quarantined]]:
        """Write linked tables' key ranges as a new version and switch to it at once."""
        scoped = self.root / SCOPED
        with exclusive(scoped / ".lock", self.lock_timeout, "selection and feature_matrix"):
            old = self._current_version()
            self._sweep_versions(old)
            if old is None or not self._linked():
                old = self._convert(old)
            new = self._version_from(old)
            try:
                plans: list[_Plan] = []
                try:
                    for spec, key, rows in writes:
                        plans.append(self._plan(spec, key, rows, new))
                except BaseException:
                    for plan in plans:
                        plan.discard()
                    raise
                moved = []
                for i, plan in enumerate(plans):
                    moved += self._apply(plan)
                    if i == 0:
                        crash_point("linked:planned")
                crash_point("linked:before-switch")
                self._switch(new)
            except BaseException:
                if self._current_version() != new:
                    shutil.rmtree(new, ignore_errors=True)
                raise
            crash_point("linked:after-switch")
            self._sweep_versions(new)  # the old version
        return [plan.removed for plan in plans], moved

    def _linked(self) -> bool:
        """Whether every linked table's folder is the link into ``.scoped/current``."""
        return all(_readlink(self.root / n) == f"{SCOPED}/{CURRENT}/{n}" for n in LINKED)

    def _version_from(self, old: Path | None, *, folders: bool = False) -> Path:
        """A new version folder holding hard links to the files of ``old`` (or the folders).

        ``folders``: take each table from ``<root>/<table>`` when that is a plain folder (a
        store written before linked tables, or a copy that followed the links).
        """
        new = self.root / SCOPED / f"v-{uuid.uuid4().hex}"
        try:
            for name in LINKED:
                plain = self.root / name
                if folders and plain.is_dir() and not plain.is_symlink():
                    source: Path | None = plain
                else:
                    source = old / name if old is not None and (old / name).is_dir() else None
                if source is not None:
                    _link_tree(source, new / name)
                else:
                    (new / name).mkdir(parents=True, exist_ok=True)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        return new

    def _convert(self, old: Path | None) -> Path:
        """Make the linked layout hold what readers read now, before any change is made.

        A version with the current content (plain folders, or the current version) is
        switched to, then each plain folder is replaced by its link. Readers see the same rows
        all along, and a kill at any step leaves the same rows, so the next commit starts
        from them whatever step was reached.
        """
        version = self._version_from(old, folders=True)
        self._switch(version)
        self._link_folders()
        self._sweep_versions(version)
        return version

    def _current_version(self) -> Path | None:
        target = _readlink(self.root / SCOPED / CURRENT)
        return None if target is None else self.root / SCOPED / target

    def _switch(self, version: Path) -> None:
        """Point ``.scoped/current`` at ``version``: one atomic rename of a link."""
        link = version.parent / f".current-{uuid.uuid4().hex}.tmp"
        os.symlink(version.name, link)
        try:
            os.replace(link, version.parent / CURRENT)
        except BaseException:
            link.unlink(missing_ok=True)
            raise

    def _link_folders(self) -> None:
        """Make ``<root>/<table>`` the link to ``.scoped/current/<table>`` (converting folders).

        A store written before linked tables has real folders; their content is in the new
        version (hard links), so each is moved away and replaced by the link.
        """
        scoped = self.root / SCOPED
        for name in LINKED:
            path = self.root / name
            want = f"{SCOPED}/{CURRENT}/{name}"
            if _readlink(path) == want:
                continue
            if path.is_dir() and not path.is_symlink():
                os.rename(path, scoped / f".trash-{uuid.uuid4().hex}")
            link = scoped / f".link-{uuid.uuid4().hex}.tmp"
            os.symlink(want, link)
            os.replace(link, path)

    def _sweep_versions(self, current: Path | None) -> None:
        """Retire every version but ``current`` and remove what killed writers left.

        Under the ``.scoped`` lock. A version is renamed away before it is deleted, so a
        reader can tell that its version was retired while it read (see
        :meth:`_as_of_one_version`).
        """
        scoped = self.root / SCOPED
        if not scoped.is_dir():
            return
        for child in scoped.iterdir():
            if child.name == CURRENT and not child.is_symlink():  # a copy (copytree) of a store
                retired = scoped / f".trash-{uuid.uuid4().hex}"
                os.rename(child, retired)
                shutil.rmtree(retired, ignore_errors=True)
                continue
            if child.name in (".lock", CURRENT) or child == current or child.is_symlink():
                if child.is_symlink() and child.name.endswith(".tmp"):
                    child.unlink(missing_ok=True)
                continue
            if child.name.startswith("v-"):
                retired = scoped / f".trash-{uuid.uuid4().hex}"
                os.rename(child, retired)
                shutil.rmtree(retired, ignore_errors=True)
            elif child.name.startswith(".trash-"):
                shutil.rmtree(child, ignore_errors=True)
            elif child.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    child.unlink()

    @contextmanager
    def lock(self, owner: str) -> Iterator[None]:
        """Exclusive per-owner section across threads and processes of this host (flock).

        Re-entrant within a thread; waits ``lock_timeout`` seconds at most.
        """
        with exclusive(
            self.root / ".locks" / f"{entity_slug(owner)}.lock", self.lock_timeout, owner
        ):
            yield
