"""Checking an archive's index against its files, and rebuilding the index from them.

Theory of operation
-------------------
The archive's promise is that every indexed instance has its whole file, and
every file is indexed. :func:`verify` checks both directions without changing
anything: each row's file must exist with the dataset size and SHA-256 the row
recorded (bit rot, truncation, a file replaced behind the archive's back),
and each ``.dcm`` file under the folder must be a row (an orphan is left by
a crash between the file's rename and its row's commit, or by a copy made by
hand). It reads the SQLite index read-only, so it can run beside a listener.

:func:`reindex` rebuilds the SQLite index from the files alone, for an index
lost or damaged: it reads every file's header, hashes its dataset, writes a
new database next to the old one, and replaces the old one atomically only
when the new one is complete. It must not run while a listener writes into
the same folder. Unreadable files are reported and skipped, never deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dicomnet.archive.index import ArchiveIndex, IndexEntry, entry_from_file
from dicomnet.archive.retention import pending_deletions
from dicomnet.dataset.part10 import read_file_meta

__all__ = ["ReindexReport", "VerifyReport", "dataset_digest", "reindex", "verify"]

INDEX_NAME = "index.sqlite"
CHUNK = 1 << 20
BATCH = 256
"""Rows added at once while reindexing: the index group-commits them."""


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``ok`` when nothing."""

    checked: int = 0
    files: int = 0
    missing: list[str] = field(default_factory=list)
    """Rows whose file does not exist: ``uid path``."""
    size_mismatch: list[str] = field(default_factory=list)
    digest_mismatch: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    """Files under the folder that no row names."""
    leftovers: int = 0
    """Temporary files in ``.incoming`` (removed when a listener next opens the folder)."""
    pending_deletion: int = 0
    """Files of pruned studies not yet unlinked (a prune interrupted by a crash; the
    next prune finishes it, :mod:`dicomnet.archive.retention`): not orphans."""

    @property
    def problems(self) -> int:
        return sum(
            len(items)
            for items in (
                self.missing,
                self.size_mismatch,
                self.digest_mismatch,
                self.unreadable,
                self.orphans,
            )
        )

    @property
    def ok(self) -> bool:
        return self.problems == 0


@dataclass
class ReindexReport:
    indexed: int = 0
    unreadable: list[str] = field(default_factory=list)


def stored_files(folder: Path) -> Iterator[Path]:
    """Every ``.dcm`` file below ``folder``, outside hidden folders (``.incoming``)."""
    for root, directories, files in os.walk(folder):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".dcm") and not name.startswith("."):
                yield Path(root, name)


def dataset_digest(path: Path) -> tuple[int, str, str]:
    """(dataset bytes, their SHA-256, the transfer syntax) of a Part 10 file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        meta = read_file_meta(stream)
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest(), meta.transfer_syntax


def verify(folder: str | os.PathLike[str]) -> VerifyReport:
    """Check ``folder``'s SQLite index against its files; see the module docstring."""
    root = Path(folder).absolute()
    report = VerifyReport()
    database = root / INDEX_NAME
    if not database.exists():
        raise FileNotFoundError(f"{database}: no index")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT sop_instance_uid, path, size, sha256 FROM instances").fetchall()
        pruned = pending_deletions(db)
    indexed = set()
    for uid, path_text, size, sha256 in rows:
        report.checked += 1
        path = Path(path_text)
        indexed.add(str(path))
        if not path.is_file():
            report.missing.append(f"{uid} {path}")
            continue
        try:
            actual_size, actual_sha256, _ = dataset_digest(path)
        except (OSError, ValueError) as exc:
            report.unreadable.append(f"{path}: {exc}")
            continue
        if actual_size != size:
            report.size_mismatch.append(f"{path}: {actual_size} bytes, indexed {size}")
        elif sha256 and actual_sha256 != sha256:
            report.digest_mismatch.append(f"{path}: SHA-256 {actual_sha256}, indexed {sha256}")
    for path in stored_files(root):
        report.files += 1
        if str(path) in pruned:
            report.pending_deletion += 1
        elif str(path) not in indexed:
            report.orphans.append(str(path))
    incoming = root / ".incoming"
    if incoming.is_dir():
        report.leftovers = sum(1 for _ in incoming.glob("*.part"))
    return report


def reindex(folder: str | os.PathLike[str]) -> ReindexReport:
    """Rebuild ``folder``'s SQLite index from its files; see the module docstring."""
    root = Path(folder).absolute()
    target = root / INDEX_NAME
    building = root / (INDEX_NAME + ".rebuild")
    for stale in (building, *_companions(building)):
        stale.unlink(missing_ok=True)
    report = asyncio.run(_build(root, building))
    for stale in _companions(target):
        stale.unlink(missing_ok=True)
    os.replace(building, target)
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return report


async def _build(root: Path, database: Path) -> ReindexReport:
    report = ReindexReport()
    index = ArchiveIndex(database)
    try:
        batch: list[Path] = []
        for path in stored_files(root):
            batch.append(path)
            if len(batch) == BATCH:
                await _add(index, batch, report)
                batch = []
        await _add(index, batch, report)
    finally:
        await index.close()
    return report


async def _add(index: ArchiveIndex, paths: list[Path], report: ReindexReport) -> None:
    entries = await asyncio.gather(*(asyncio.to_thread(_entry, p) for p in paths))
    readable: list[IndexEntry] = []
    for path, entry in zip(paths, entries, strict=True):
        if isinstance(entry, str):
            report.unreadable.append(f"{path}: {entry}")
        else:
            readable.append(entry)
    await asyncio.gather(*(index.add(entry) for entry in readable))
    report.indexed += len(readable)


def _entry(path: Path) -> IndexEntry | str:
    """The index row of a stored file, or why it cannot be read."""
    try:
        size, sha256, transfer_syntax = dataset_digest(path)
        from pydicom.filereader import read_file_meta_info

        source = str(read_file_meta_info(path).get("SourceApplicationEntityTitle", "") or "")
        entry = entry_from_file(path, size, transfer_syntax, sha256, source.strip())
    except Exception as exc:  # pydicom and the header reader raise many kinds
        return str(exc) or type(exc).__name__
    if not entry.attributes.get("SOPInstanceUID"):
        return "no SOP Instance UID"
    return entry


def _companions(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
