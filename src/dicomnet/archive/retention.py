"""Retention and quotas: deleting the oldest studies, files and rows together.

Theory of operation
-------------------
A :class:`RetentionPolicy` says how much the archive keeps: at most
``max_storage`` bytes of stored datasets (the sum of the index's ``size``
column), and/or nothing older than ``keep_days``. :func:`plan` lists the
studies to delete, oldest first by their **last received instance**, until
both limits hold. It never chooses a study still arriving (an instance
received within ``arriving_window`` seconds, the study-stable delay), nor one
with forwards still queued (:data:`PROTECTED`).

Deleting must survive a crash at any point without leaving a row whose file
is gone (a C-MOVE would fail on it) or a file that verification cannot
account for. Studies go in batches of about :data:`BATCH_INSTANCES`
instances, each in three steps:

1. **one transaction** moves the paths of their instances into the
   ``pruned_files`` journal and deletes their instance, series and study rows
   (and a patient's, when no other study of it remains). From that commit on,
   queries no longer see them. The transaction checks again, study by study,
   that no instance arrived since the plan was made; a study that received
   one is kept.
2. the files are unlinked (by a few threads at once: each unlink waits on
   the file system's journal) and their folders removed once empty or else
   synced, off the index thread; a path that a new row names again (the same
   instance sent again meanwhile) is left alone.
3. the journal rows are deleted.

A crash between 1 and 3 leaves journal rows: :meth:`Pruner.resume` (run when
an archive starts pruning and by ``dicomnet archive prune``) finishes them,
and ``dicomnet archive verify`` counts their files as pending deletion, not as
orphans. Files of a study are deleted only after the rows that name them,
so nothing acknowledged is visible without its file at any moment.

The index's single worker thread runs each transaction between group commits
of arriving instances, so a batch holds ingestion for one short transaction,
not for its unlinks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.archive.database import Database
from dicomnet.archive.index import ArchiveIndex

__all__ = ["PROTECTED", "PruneReport", "Pruner", "RetentionPolicy", "StudyUsage", "plan"]

log = logging.getLogger("dicomnet.archive.retention")

DAY = 86400.0

PROTECTED: tuple[str, ...] = (
    "EXISTS (SELECT 1 FROM forward_queue WHERE forward_queue.study_uid = ?)",
)
"""SQL conditions (on a study UID parameter) that keep a study: forwards still
queued for it (:mod:`dicomnet.archive.forwarding`)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """How much the archive keeps; None means no such limit.

    Parameters
    ----------
    max_storage : int, optional
        Bytes of stored datasets kept at most.
    keep_days : float, optional
        Studies whose last instance arrived longer ago than this are deleted.
    arriving_window : float
        A study that received an instance this recently is still arriving and
        never deleted (the study-stable delay, ``--study-stable-after``).
    """

    max_storage: int | None = None
    keep_days: float | None = None
    arriving_window: float = 60.0

    @property
    def active(self) -> bool:
        return self.max_storage is not None or self.keep_days is not None


@dataclass(frozen=True)
class StudyUsage:
    """One study as the plan sees it."""

    study_uid: str
    patient_id: str
    last_received: float
    instances: int
    size: int
    reason: str = ""


@dataclass
class PruneReport:
    """What one pass deleted (or, in a dry run, would delete)."""

    total_before: int = 0
    studies: list[StudyUsage] = field(default_factory=list)
    kept_arriving: int = 0
    kept_protected: int = 0
    skipped: int = 0
    """Studies planned but kept: an instance arrived between the plan and the delete."""
    files: int = 0
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(study.size for study in self.studies)

    @property
    def instances(self) -> int:
        return sum(study.instances for study in self.studies)


_USAGE = (
    "SELECT se.study_uid, max(p.patient_id), max(i.stored_at), count(*), sum(i.size)"
    " FROM instances i JOIN series se ON i.series_uid = se.series_uid"
    " JOIN studies st ON st.study_uid = se.study_uid JOIN patients p ON p.pk = st.patient_pk"
    " GROUP BY se.study_uid ORDER BY 3, 1"
)


def _protected(db: Database, study_uid: str) -> bool:
    return any(
        db.execute(f"SELECT {condition}", (study_uid,)).fetchone()[0] for condition in PROTECTED
    )


def plan(db: Database, policy: RetentionPolicy, now: float | None = None) -> PruneReport:
    """The studies ``policy`` deletes now, oldest last-received first."""
    now = time.time() if now is None else now
    report = PruneReport()
    # Cheap first: the oldest instance (an index) and the total size (one column);
    # the per-study plan below groups every row, worth it only when a limit is passed.
    total, oldest = db.execute("SELECT sum(size), min(stored_at) FROM instances").fetchone()
    report.total_before = int(total or 0)
    over = policy.max_storage is not None and report.total_before > policy.max_storage
    expiring = (
        policy.keep_days is not None
        and oldest is not None
        and float(oldest) < now - policy.keep_days * DAY
    )
    if not (over or expiring):
        return report
    studies = [
        StudyUsage(uid, patient or "", float(last), int(count), int(size or 0))
        for uid, patient, last, count, size in db.execute(_USAGE).fetchall()
    ]
    total = report.total_before = sum(study.size for study in studies)
    expired_before = now - policy.keep_days * DAY if policy.keep_days is not None else None
    for study in studies:
        over_quota = policy.max_storage is not None and total > policy.max_storage
        expired = expired_before is not None and study.last_received < expired_before
        if not (over_quota or expired):
            break  # oldest first: no later study is expired, and the quota holds
        if study.last_received > now - policy.arriving_window:
            report.kept_arriving += 1
            continue
        if _protected(db, study.study_uid):
            report.kept_protected += 1
            continue
        reason = "expired" if expired else "quota"
        report.studies.append(
            StudyUsage(
                study.study_uid, study.patient_id, study.last_received, study.instances,
                study.size, reason,
            )
        )  # fmt: skip
        total -= study.size
    return report


def _delete_batch(
    db: Database, studies: list[StudyUsage], now: float
) -> list[tuple[StudyUsage, list[str]]]:
    """Step 1 for several studies in one transaction (one commit, one WAL sync)."""
    db.begin()
    try:
        deleted = [(s, p) for s in studies if (p := _delete_study(db, s, now)) is not None]
        db.commit()
    except Exception:
        db.rollback()
        raise
    return deleted


def _delete_rows(db: Database, study: StudyUsage, now: float) -> list[str] | None:
    """Step 1 for one study in its own transaction; None if it changed since the plan."""
    deleted = _delete_batch(db, [study], now)
    return deleted[0][1] if deleted else None


def _delete_study(db: Database, study: StudyUsage, now: float) -> list[str] | None:
    """Journal the study's paths and delete its rows, inside the caller's transaction."""
    last, count = db.execute(
        "SELECT max(i.stored_at), count(*) FROM instances i"
        " JOIN series se ON i.series_uid = se.series_uid WHERE se.study_uid = ?",
        (study.study_uid,),
    ).fetchone()
    if last is None or float(last) > study.last_received or int(count) != study.instances:
        return None  # an instance arrived (or went) since the plan
    if _protected(db, study.study_uid):
        return None
    paths = [
        row[0]
        for row in db.execute(
            "SELECT i.path FROM instances i JOIN series se ON i.series_uid = se.series_uid"
            " WHERE se.study_uid = ?",
            (study.study_uid,),
        ).fetchall()
    ]
    db.execute(
        "INSERT INTO pruned_files (path, study_uid, pruned_at)"
        " SELECT i.path, se.study_uid, ? FROM instances i"
        " JOIN series se ON i.series_uid = se.series_uid WHERE se.study_uid = ?"
        " ON CONFLICT (path) DO NOTHING",
        (now, study.study_uid),
    )
    db.execute(
        "DELETE FROM instances WHERE series_uid IN"
        " (SELECT series_uid FROM series WHERE study_uid = ?)",
        (study.study_uid,),
    )
    db.execute("DELETE FROM series WHERE study_uid = ?", (study.study_uid,))
    row = db.execute(
        "SELECT patient_pk FROM studies WHERE study_uid = ?", (study.study_uid,)
    ).fetchone()
    db.execute("DELETE FROM studies WHERE study_uid = ?", (study.study_uid,))
    if row is not None:
        db.execute(
            "DELETE FROM patients WHERE pk = ?"
            " AND NOT EXISTS (SELECT 1 FROM studies WHERE patient_pk = ?)",
            (row[0], row[0]),
        )
    return paths


BATCH_INSTANCES = 2000
"""Instances deleted in one transaction at most (a single study may exceed it): one
commit and one round of folder syncs for many small studies, while arriving
instances wait no longer than a few tens of milliseconds for the index."""


def _batches(studies: list[StudyUsage]) -> Iterable[list[StudyUsage]]:
    batch: list[StudyUsage] = []
    count = 0
    for study in studies:
        if batch and count + study.instances > BATCH_INSTANCES:
            yield batch
            batch, count = [], 0
        batch.append(study)
        count += study.instances
    if batch:
        yield batch


def _journal(db: Database) -> dict[str, list[str]]:
    """Paths journalled for deletion, by study."""
    pending: dict[str, list[str]] = {}
    for path, study_uid in db.execute("SELECT path, study_uid FROM pruned_files").fetchall():
        pending.setdefault(study_uid, []).append(path)
    return pending


def _reused(db: Database, paths: list[str]) -> set[str]:
    """Journalled paths a row names again (the instance was stored anew meanwhile)."""
    wanted = set(paths)
    uids = sorted({Path(path).stem for path in paths})  # files are named <SOP Instance UID>.dcm
    reused: set[str] = set()
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        reused.update(
            row[0]
            for row in db.execute(
                f"SELECT path FROM instances WHERE sop_instance_uid IN ({marks})", chunk
            )
            if row[0] in wanted
        )
    return reused


def _forget(db: Database, paths: list[str]) -> None:
    """Step 3: the files are gone; their journal rows go too."""
    db.begin()
    try:
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            db.execute(
                f"DELETE FROM pruned_files WHERE path IN ({', '.join('?' * len(chunk))})", chunk
            )
        db.commit()
    except Exception:
        db.rollback()
        raise


def unlink_files(paths: Iterable[str], root: Path | None = None) -> int:
    """Step 2: delete files, sync their folders, remove folders left empty below ``root``."""
    files = [Path(text) for text in paths]
    folders = {path.parent for path in files}
    # An unlink waits on the file system's journal (milliseconds on a busy disk):
    # several at once overlap those waits, about ten times faster for 8 threads.
    with ThreadPoolExecutor(UNLINK_THREADS, thread_name_prefix="dicomnet-prune") as pool:
        removed = sum(pool.map(_unlink_one, files, chunksize=64))
    # A folder left empty is removed (its parent then needs the sync); one that
    # is not is synced itself. Each folder is synced once per call, deepest first.
    to_sync: set[Path] = set()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        current = folder
        while True:
            if root is None or current == root or root not in current.parents:
                to_sync.add(current)
                break
            try:
                current.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                to_sync.add(current)  # not empty: another instance (or study) lives there
                break
            to_sync.discard(current)
            current = current.parent
    for folder in sorted(to_sync, key=lambda p: len(p.parts), reverse=True):
        _sync(folder)
    return removed


UNLINK_THREADS = 8


def _unlink_one(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1


def _sync(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class Pruner:
    """Applies a :class:`RetentionPolicy` to an archive's index and folder.

    Parameters
    ----------
    index : ArchiveIndex
        The archive's index; every transaction runs on its worker thread.
    root : path, optional
        The archive folder: folders left empty below it are removed.
    policy : RetentionPolicy
    on_pruned : callable, optional
        Called with each study deleted (metrics, logs).
    """

    def __init__(
        self,
        index: ArchiveIndex,
        policy: RetentionPolicy,
        root: Path | None = None,
        *,
        on_pruned: Callable[[StudyUsage], None] | None = None,
    ) -> None:
        self.index = index
        self.policy = policy
        self.root = root
        self.on_pruned = on_pruned
        self.pruned_studies = 0
        self.pruned_instances = 0
        self.pruned_bytes = 0

    async def plan(self, now: float | None = None) -> PruneReport:
        """What a pass would delete now (the dry run)."""
        report: PruneReport = await self.index.run_on_index(plan, self.policy, now)
        return report

    async def resume(self) -> int:
        """Finish deletions a crash interrupted (journal rows left); files removed."""
        pending: dict[str, list[str]] = await self.index.run_on_index(_journal)
        return await self._unlink([path for paths in pending.values() for path in paths])

    async def prune(self, now: float | None = None) -> PruneReport:
        """One pass: resume, plan, then delete each planned study (oldest first)."""
        started = time.monotonic()
        await self.resume()
        report = await self.plan(now)
        deleted: list[StudyUsage] = []
        for batch in _batches(report.studies):
            done = await self.index.run_on_index(_delete_batch, batch, time.time())
            report.skipped += len(batch) - len(done)
            report.files += await self._unlink([path for _, paths in done for path in paths])
            for study, _ in done:
                deleted.append(study)
                self.pruned_studies += 1
                self.pruned_instances += study.instances
                self.pruned_bytes += study.size
                log.info(
                    "pruned study %s (%s): %d instances, %d bytes, last received %s",
                    study.study_uid, study.reason, study.instances, study.size,
                    time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(study.last_received)),
                )  # fmt: skip
                if self.on_pruned is not None:
                    self.on_pruned(study)
        report.studies = deleted
        report.seconds = time.monotonic() - started
        return report

    async def _unlink(self, paths: list[str]) -> int:
        if not paths:
            return 0
        reused = await self.index.run_on_index(_reused, paths)
        doomed = [p for p in paths if p not in reused]
        removed = await asyncio.to_thread(unlink_files, doomed, self.root)
        await self.index.run_on_index(_forget, paths)
        return removed

    async def run(self, interval: float) -> None:
        """Prune every ``interval`` seconds until cancelled; a failed pass is logged."""
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or the disk; tried again next time
                log.exception("pruning failed")
            await asyncio.sleep(interval)


def pending_deletions(db: Any) -> set[str]:
    """Paths journalled for deletion (for verification); empty for an older index."""
    try:
        return {row[0] for row in db.execute("SELECT path FROM pruned_files")}
    except Exception:  # no such table: an index made before retention
        return set()
