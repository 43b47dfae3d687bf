"""A Parquet directory store: one dataset folder per table, partitioned by owner and key range.

Layout (``<owner>`` is the entity or scope as a safe folder name, see :func:`entity_slug`):

- ``grid/<owner>/<YYYY-MM>.parquet``, ``coverage/<owner>/<YYYY-MM>.parquet``: by month;
- ``eras/<owner>/<level>.parquet``, ``feature_ledger/...``, ``selection/...``: by level;
- ``features/<owner>/<level>/<era_id>-<stage>.parquet``: one file per era and stage;
- ``feature_matrix/<scope>/<entity>/<level>.parquet``.

A write touches only the files of its key range: it reads each, drops the rows of the range,
adds the new rows and moves the result into place with ``os.replace`` (a crash leaves each
file old or new, never half-written). Every file of a table has the table's one declared
schema, so ``pandas.read_parquet("<root>/<table>")`` reads exactly the current rows, and no
write ever rewrites other files to unify schemas. Reads list the files of the key range and
push the rest of the range down as a ``pyarrow.dataset`` filter.

Writers of one owner's files (threads, or processes on one host) hold an exclusive ``flock``
on the owner's folder for their read-modify-write; readers need none (files are replaced
atomically). Hidden files (``.lock``, ``.owner``, temporary ``.*.tmp``) are ignored by readers.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from eraflow.store.arrow import empty_frame, key_filter, sort_by_key, to_arrow, to_frame
from eraflow.store.base import Key, Range, check_key, check_rows
from eraflow.store.tables import ENGINE_STAGES, Table, table

OWNER_FILE = ".owner"


def entity_slug(entity: str) -> str:
    """A file-system-safe, collision-free folder name for an entity (or scope)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", entity)
    if slug != entity or slug in {"", ".", ".."} or slug.startswith((".", "_")):
        slug = f"{slug.lstrip('._') or 'x'}-{hashlib.sha1(entity.encode()).hexdigest()[:8]}"
    return slug


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_file`` (made when absent)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(data: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(data, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    """Results in a local folder (the embedded default); see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

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
    def _owner_dir(self, spec: Table, owner: str) -> Path:
        return self.root / spec.name / entity_slug(owner)

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
            parts, name = rows[["level"]].astype(str), "{0}.parquet"
        elif spec.partition == "entity-level":
            parts, name = rows[["entity", "level"]].astype(str), "{0}/{1}.parquet"
        else:
            parts = pd.DataFrame(
                {
                    "level": rows["level"].astype(str),
                    "era": rows["era_id"].to_numpy(dtype=np.int64),
                    "engine": rows["engine"].astype(str),
                }
            )
            name = "{0}/{1}-{2}.parquet"
        out: dict[str, list[np.ndarray]] = {}
        for values, index in parts.groupby(list(parts.columns), sort=False).indices.items():
            values = values if isinstance(values, tuple) else (values,)
            if spec.partition == "entity-level":
                values = (entity_slug(str(values[0])), values[1])
            elif spec.partition == "era":
                values = (values[0], values[1], ENGINE_STAGES.get(values[2], values[2]))
            out.setdefault(name.format(*values), []).append(index)
        return {file: np.sort(np.concatenate(parts_)) for file, parts_ in out.items()}

    def _key_files(self, spec: Table, key: Key) -> list[Path]:
        """Existing files that may hold rows of ``key`` (a superset; the filter does the rest)."""
        folder = self._owner_dir(spec, key.owner)
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

    def _dataset(self, spec: Table, files: list[Path]) -> ds.Dataset:
        return ds.dataset([str(f) for f in files], schema=spec.schema, format="parquet")

    # reads ----------------------------------------------------------------------------------
    def read(
        self, name: str, key: Key | None = None, *, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``key`` (None: every owner), in primary-key order."""
        spec = table(name)
        wanted = list(columns) if columns is not None else spec.names
        for column in wanted:
            spec.kind(column)
        if key is None:
            base = self.root / spec.name
            files = sorted(
                p
                for p in base.rglob("*.parquet")
                if not any(part.startswith(".") for part in p.relative_to(base).parts)
            )
            expr = None
        else:
            check_key(spec, key)
            files = self._key_files(spec, key)
            expr = key_filter(spec, key)
        if not files:
            return empty_frame(spec, wanted)
        data = self._dataset(spec, files).to_table(filter=expr)
        data = sort_by_key(spec, data)
        return to_frame(spec, data, wanted)

    def read_batches(
        self, name: str, key: Key, *, columns: Sequence[str]
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``key`` as arrow record batches (file by file, unsorted)."""
        spec = table(name)
        check_key(spec, key)
        for column in columns:
            spec.kind(column)
        files = self._key_files(spec, key)
        if files:
            yield from self._dataset(spec, files).to_batches(
                columns=list(columns), filter=key_filter(spec, key)
            )

    def owners(self, name: str) -> list[str]:
        """Owners with a folder in the table (their names as written, from ``.owner``)."""
        folder = self.root / table(name).name
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
        self._rewrite(spec, key, rows)
        return len(rows)

    def delete(self, name: str, key: Key) -> int:
        """Delete the rows of ``key``; returns how many were removed."""
        spec = table(name)
        check_key(spec, key)
        return self._rewrite(spec, key, None)

    def _rewrite(self, spec: Table, key: Key, rows: pd.DataFrame | None) -> int:
        folder = self._owner_dir(spec, key.owner)
        new_by_file: dict[Path, pa.Table] = {}
        if rows is not None and len(rows):
            data = to_arrow(spec, rows)
            for file_name, positions in self._rows_by_file(spec, rows).items():
                new_by_file[folder / file_name] = data.take(pa.array(positions))
        removed = 0
        with exclusive(folder / ".lock"):
            marker = folder / OWNER_FILE
            if not marker.is_file():
                marker.write_text(key.owner, encoding="utf-8")
            expr = key_filter(spec, key)
            paths = sorted(set(self._key_files(spec, key)) | set(new_by_file))
            for parent in {p.parent for p in paths}:
                # A killed writer's leftovers: no other writer of this owner runs (the lock).
                for stale in parent.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)
            for path in paths:
                kept = None
                if path.is_file():
                    old = pq.read_table(path, schema=spec.schema)
                    hit = pc.fill_null(
                        ds.dataset(old).to_table(columns={"hit": expr}).column("hit"), False
                    )
                    removed += int(pc.sum(hit).as_py() or 0)
                    if not pc.any(hit).as_py() and path not in new_by_file:
                        continue
                    kept = old.filter(pc.invert(hit))
                parts = [t for t in (kept, new_by_file.get(path)) if t is not None and t.num_rows]
                if not parts:
                    path.unlink(missing_ok=True)
                    continue
                merged = sort_by_key(spec, pa.concat_tables(parts))
                _atomic_write(merged, path)
        return removed

    @contextmanager
    def lock(self, owner: str) -> Iterator[None]:
        """Exclusive per-owner section across threads and processes of this host (flock)."""
        with exclusive(self.root / ".locks" / f"{entity_slug(owner)}.lock"):
            yield
