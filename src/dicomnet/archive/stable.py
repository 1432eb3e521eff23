"""Study-stable events: a study that received no instance for a while is reported once.

Theory of operation
-------------------
A modality sends a study as a burst of C-STOREs, sometimes over several
associations, with no message saying "done". A study is **stable** once no
instance of it has arrived for ``stable_after`` seconds (storescp's
``--eostudy-timeout``, Orthanc's ``StableAge``). :class:`StableStudies`
watches every stored instance (it is a store observer), keeps the last
arrival of each study in memory, and checks the studies that fell due once a
second.

The decision is the index's, not the memory's: when a study falls due, one
transaction on the index thread reads its last received instance (the
largest ``stored_at`` of its rows, whichever process or worker stored them)
and, if that is old enough, **claims** the report in the ``stable_studies``
table: the study's row records the ``stored_at`` it was reported at. A claim
succeeds only when no report covers that instant yet, so two workers, or a
process and its successor, never report the same study twice. Instances that
arrive after the report make a new burst, reported again with the new
count once it settles.

After a restart (even a ``kill -9``) nothing is kept in memory: the watcher
asks the index for the studies with an instance stored after its
**watermark** (a time before which every study was reported or not due, kept
in ``site_state``) and takes them up again. The first start on an archive
sets the watermark to now, so existing studies are not reported.

Reports are at most once: a crash after the claim and before the receivers
ran loses that study's report, never duplicates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomnet.archive.database import Database
from dicomnet.archive.index import ArchiveIndex

__all__ = ["StableStudies", "StudyStable"]

log = logging.getLogger("dicomnet.archive.stable")

WATERMARK = "stable_watermark"


@dataclass(frozen=True, slots=True)
class StudyStable:
    """A study that received no instance for the stable delay."""

    study_uid: str
    folder: str
    """The study's folder in the archive."""
    instances: int
    calling_ae_title: str
    """The calling AE title of the study's last received instance."""
    last_received: float
    patient_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The event as its ``study_stable`` line of the JSONL event log."""
        return {
            "event": "study_stable",
            "time": _iso(time.time()),
            "study_uid": self.study_uid,
            "folder": self.folder,
            "instances": self.instances,
            "calling_ae_title": self.calling_ae_title,
            "patient_id": self.patient_id,
            "last_received": _iso(self.last_received),
        }


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int(seconds % 1 * 1000):03d}Z"
    )


def _watermark(db: Database, now: float) -> float:
    """The persisted watermark; set to ``now`` on the first start."""
    row = db.execute("SELECT value FROM site_state WHERE name = ?", (WATERMARK,)).fetchone()
    if row is not None:
        return float(row[0])
    db.execute(
        "INSERT INTO site_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (WATERMARK, str(now)),
    )
    row = db.execute("SELECT value FROM site_state WHERE name = ?", (WATERMARK,)).fetchone()
    return float(row[0])


def _set_watermark(db: Database, value: float) -> None:
    db.execute(
        "INSERT INTO site_state (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (WATERMARK, str(value)),
    )


def _recent(db: Database, now: float) -> dict[str, float]:
    """Studies with an instance stored after the watermark, by last received (resume)."""
    mark = _watermark(db, now)
    return {
        uid: float(last)
        for uid, last in db.execute(
            "SELECT se.study_uid, max(i.stored_at) FROM instances i"
            " JOIN series se ON i.series_uid = se.series_uid"
            " WHERE i.stored_at > ? GROUP BY se.study_uid",
            (mark,),
        ).fetchall()
    }


def _claim(db: Database, study_uid: str, stable_before: float) -> StudyStable | float | None:
    """Report ``study_uid`` if it is stable and unreported: the event, or the last
    arrival when it is not stable yet, or None when there is nothing to report."""
    db.begin()
    try:
        row = db.execute(
            "SELECT max(i.stored_at), count(*) FROM instances i"
            " JOIN series se ON i.series_uid = se.series_uid WHERE se.study_uid = ?",
            (study_uid,),
        ).fetchone()
        if row is None or row[0] is None:
            db.rollback()
            return None  # pruned, or never indexed
        last, count = float(row[0]), int(row[1])
        if last > stable_before:
            db.rollback()
            return last
        reported = db.execute(
            "SELECT reported_last FROM stable_studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        if reported is not None and float(reported[0]) >= last:
            db.rollback()
            return None  # reported already, by this process or another
        db.execute(
            "INSERT INTO stable_studies (study_uid, reported_last, reported_at) VALUES (?, ?, ?)"
            " ON CONFLICT (study_uid) DO UPDATE SET reported_last = excluded.reported_last,"
            " reported_at = excluded.reported_at",
            (study_uid, last, time.time()),
        )
        path, source, patient = db.execute(
            "SELECT i.path, i.source_ae_title, p.patient_id FROM instances i"
            " JOIN series se ON i.series_uid = se.series_uid"
            " JOIN studies st ON st.study_uid = se.study_uid"
            " JOIN patients p ON p.pk = st.patient_pk"
            " WHERE se.study_uid = ? ORDER BY i.stored_at DESC LIMIT 1",
            (study_uid,),
        ).fetchone()
        db.commit()
    except Exception:
        db.rollback()
        raise
    folder = str(Path(path).parent.parent)
    return StudyStable(study_uid, folder, count, source or "", last, patient or "")


class StableStudies:
    """Watches stored instances and reports each study once it is stable.

    Parameters
    ----------
    index : ArchiveIndex
        The archive's index: the claims and the resume read it.
    stable_after : float
        Seconds without a new instance before a study is stable.
    receivers : list of callables
        Each called with every :class:`StudyStable`, on the event loop; they
        must not block (:class:`dicomnet.archive.hooks.HookRunner` queues).
    """

    def __init__(
        self,
        index: ArchiveIndex,
        stable_after: float = 60.0,
        receivers: list[Callable[[StudyStable], None]] | None = None,
    ) -> None:
        self.index = index
        self.stable_after = stable_after
        self.receivers = list(receivers or [])
        self._last: dict[str, float] = {}
        """Study UID -> last arrival seen (wall clock), for studies not yet reported."""
        self.reported = 0
        self._task: asyncio.Task[None] | None = None

    # -- feeding -------------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        """A store observer: note the study of each stored instance."""
        if not event.stored or not event.path:
            return
        study_uid = Path(event.path).parent.parent.name  # the archive's study layout
        self._last[study_uid] = max(self._last.get(study_uid, 0.0), event.time)

    @property
    def pending(self) -> int:
        """Studies watched and not yet reported."""
        return len(self._last)

    # -- running -------------------------------------------------------------------------
    async def start(self) -> None:
        """Take up the studies the index holds unreported, then watch."""
        recent: dict[str, float] = await self.index.run_on_index(_recent, time.time())
        for uid, last in recent.items():
            self._last[uid] = max(self._last.get(uid, 0.0), last)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop watching; a study not yet reported is found again from the index next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        period = min(1.0, max(self.stable_after / 4, 0.05))
        while True:
            await asyncio.sleep(period)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database: tried again next period
                log.exception("study-stable check failed")

    async def check(self, now: float | None = None) -> list[StudyStable]:
        """Report every watched study that is due; returns the events sent."""
        now = time.time() if now is None else now
        before = now - self.stable_after
        due = [uid for uid, last in self._last.items() if last <= before]
        events = []
        for uid in due:
            outcome = await self.index.run_on_index(_claim, uid, before)
            if isinstance(outcome, float):
                self._last[uid] = outcome  # another process stored one since: wait again
                continue
            if self._last.get(uid, 0.0) <= before:
                del self._last[uid]
            if outcome is None:
                continue
            self.reported += 1
            events.append(outcome)
            for receiver in self.receivers:
                try:
                    receiver(outcome)
                except Exception:
                    log.exception("study-stable receiver %r failed", receiver)
        if due:
            # Everything stored before the oldest study still watched is settled. The
            # margin covers rows whose stored_at precedes the answer time seen here.
            mark = min([*self._last.values(), before]) - max(self.stable_after, 60.0)
            await self.index.run_on_index(_store_watermark, mark)
        return events


def _store_watermark(db: Database, value: float) -> None:
    db.begin()
    try:
        _set_watermark(db, value)
        db.commit()
    except Exception:
        db.rollback()
        raise
