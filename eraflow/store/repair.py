"""Repair a store: find unreadable Parquet files, move them aside, say what to re-run.

:func:`repair` reads every file of every table. An unreadable one (truncated by a full disk
or a copy cut short) is moved to ``<store>/.quarantine/<table>/...`` by a write that deletes
exactly the file's key range, under the same locks as any write, so the store is never left
worse: every other file stays as it was, and readers see the file's rows gone instead of an
error. What else depends on the moved rows is made to be recomputed:

- a ``features`` file: the ledger rows of its era and stage are deleted too (the store then
  knows those features are missing; the next run of the entity recomputes them);
- a ``selection`` or ``feature_matrix`` file: the pair of its (scope, level) is deleted in one
  commit (never a matrix without its names, or names over a partial matrix).

The report lists each moved file with the (table, owner, key range) whose rows a re-run must
write again. The PostgreSQL store has no files to scan: its report is empty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from eraflow.store.base import Key, ResultStore
from eraflow.store.parquet import (
    LINKED,
    OWNER_FILE,
    SCOPED,
    ParquetStore,
    Quarantined,
    entity_slug,
    exclusive,
    unreadable_files,
)
from eraflow.store.quarantine import file_key, partition_of, quarantine_path
from eraflow.store.tables import FEATURE_LEDGER, TABLES, Table

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` checked, moved aside and made to be recomputed.

    Attributes
    ----------
    store
        The store repaired (``describe()``).
    checked
        Files read.
    quarantined
        Files moved to ``.quarantine``, each with the key range a re-run must rewrite.
    invalidated
        Rows deleted so that the next run recomputes what depended on a moved file.
    swept
        Temporary files of killed writers removed.
    note
        Anything else to tell (e.g. that a PostgreSQL store has no files to scan).
    """

    store: str
    checked: int = 0
    quarantined: tuple[Quarantined, ...] = ()
    invalidated: tuple[str, ...] = ()
    swept: int = 0
    note: str = ""

    @property
    def clean(self) -> bool:
        """True when nothing was unreadable."""
        return not self.quarantined

    @property
    def reruns(self) -> list[tuple[str, str, Key]]:
        """(table, owner, key range) whose rows a re-run must write again."""
        return [(q.table, q.owner, q.key) for q in self.quarantined]

    def lines(self) -> list[str]:
        """The report for people, one line per finding (what ``eraflow repair`` prints)."""
        head = f"checked {self.checked} files in {self.store}"
        if self.note:
            head += f" ({self.note})"
        out = [head]
        for q in self.quarantined:
            out.append(f"moved unreadable {q.path} to {q.moved_to}: {q.rerun}")
        out += [f"deleted {what} (recomputed by that re-run)" for what in self.invalidated]
        if self.swept:
            out.append(f"removed {self.swept} temporary files of interrupted writes")
        if self.clean:
            out.append("every file is readable: nothing to repair")
        return out


@dataclass
class _Found:
    quarantined: list[Quarantined] = field(default_factory=list)
    invalidated: list[str] = field(default_factory=list)


def repair(store: ResultStore) -> RepairReport:
    """Scan every table's files; quarantine unreadable ones; report what a re-run rewrites.

    Safe while runs write (every move is a write under the owner's lock, re-checked there);
    a second repair finds nothing. ``store`` is usually a ``ParquetStore``; any other store
    returns an empty report.
    """
    if not isinstance(store, ParquetStore):
        return RepairReport(
            store=store.describe(), note="not a folder of Parquet files: nothing to scan"
        )
    checked, swept = 0, 0
    found = _Found()
    for spec in TABLES.values():
        snapshot = store._snapshot()
        base = snapshot if spec.name in LINKED else store.root
        files = store._table_files(spec, base)
        checked += len(files)
        swept += _sweep_temporaries(store, spec, base)
        for path, reason in unreadable_files(spec, files):
            relative = path.relative_to(base / spec.name)
            logger.warning("%s/%s cannot be read (%s)", spec.name, relative, reason)
            if spec.name in LINKED:
                _repair_linked(store, spec, relative, found)
            else:
                _repair_file(store, spec, relative, found)
    return RepairReport(
        store=store.describe(),
        checked=checked,
        quarantined=tuple(found.quarantined),
        invalidated=tuple(found.invalidated),
        swept=swept,
    )


def _owner(spec: Table, base: Path, folder: str) -> str | None:
    """The owner whose folder is ``folder`` (from its marker); None when it cannot be told."""
    marker = base / spec.name / folder / OWNER_FILE
    owner = marker.read_text(encoding="utf-8") if marker.is_file() else folder
    return owner if entity_slug(owner) == folder else None


def _repair_file(store: ParquetStore, spec: Table, relative: Path, found: _Found) -> None:
    """Delete exactly the file's key range (which moves it aside), under the owner's lock."""
    folder = store.root / spec.name / relative.parts[0]
    part = partition_of(spec, relative)
    owner = _owner(spec, store.root, relative.parts[0])
    with exclusive(folder / ".lock", store.lock_timeout, f"{spec.name} of {owner}"):
        path = store.root / spec.name / relative
        if not unreadable_files(spec, [path]):
            return  # rewritten meanwhile
        if part is None or owner is None:
            found.quarantined.append(_move(store, spec, relative, owner or relative.parts[0]))
            return
        key = file_key(part, owner)
        _, moved = store._write(spec, key, None)
        found.quarantined += moved
        if spec.name == "features" and part.era_id is not None:
            ledger = Key(owner, {"level": part.level, "era_id": [part.era_id], "stage": part.stage})
            gone = store._write(FEATURE_LEDGER, ledger, None)[0]
            if gone:
                found.invalidated.append(
                    f"{gone} feature_ledger row of {owner!r} level {part.level} era "
                    f"{part.era_id} stage {part.stage}"
                )


def _repair_linked(store: ParquetStore, spec: Table, relative: Path, found: _Found) -> None:
    """Delete the (scope, level) pair in one commit, which moves the unreadable file aside."""
    part = partition_of(spec, relative)
    with exclusive(store.root / SCOPED / ".lock", store.lock_timeout, "selection and matrix"):
        base = store._snapshot()
        if not unreadable_files(spec, [base / spec.name / relative]):
            return
        owner = _owner(spec, base, relative.parts[0])
        if part is None or owner is None or part.level is None:
            found.quarantined.append(
                _move(store, spec, relative, owner or relative.parts[0], base=base)
            )
            return
        key = Key(owner, {"level": part.level})
        removed, moved = store._commit_linked(
            [(TABLES[name], key, None) for name in LINKED]  # both tables: one commit
        )
        found.quarantined += moved
        found.invalidated.append(
            f"the selection ({removed[0]} rows) and feature matrix ({removed[1]} rows) of "
            f"scope {owner!r} level {part.level}"
        )


def _move(
    store: ParquetStore, spec: Table, relative: Path, owner: str, base: Path | None = None
) -> Quarantined:
    """Move a file the store cannot name a key range for (a foreign file) aside."""
    source = (base if base is not None else store.root) / spec.name / relative
    target = quarantine_path(store.root, spec.name, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)
    logger.warning("moved unreadable %s/%s to %s", spec.name, relative, target)
    return Quarantined(
        table=spec.name,
        owner=owner,
        path=Path(spec.name) / relative,
        moved_to=target,
        key=Key(owner),
        rerun=f"not a file this store writes: check {target}, then re-run {owner!r}",
    )


def _sweep_temporaries(store: ParquetStore, spec: Table, base: Path) -> int:
    """Remove killed writers' temporary files, each owner folder under its lock."""
    table_dir = base / spec.name
    if not table_dir.is_dir() or spec.name in LINKED:
        return 0  # linked tables: swept with their versions by the next commit
    swept = 0
    for folder in sorted(p for p in table_dir.iterdir() if p.is_dir()):
        stale = list(folder.rglob(".*.tmp"))
        if not stale:
            continue
        with exclusive(folder / ".lock", store.lock_timeout, f"{spec.name} of {folder.name}"):
            for path in folder.rglob(".*.tmp"):
                path.unlink(missing_ok=True)
                swept += 1
    return swept
