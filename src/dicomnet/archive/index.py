"""The embedded archive index: patients, studies, series and instances in SQLite.

Theory of operation
-------------------
Database calls run on one worker thread owned by the index. Adding
instances is **group-committed**: :meth:`ArchiveIndex.add` queues an entry and
returns when the transaction that holds it has committed; the entries queued
in one turn of the event loop, and those that arrive while a transaction
commits, go together into one transaction. The database runs in WAL mode with
``synchronous=FULL``, so a committed row survives a power loss
(``shared/durability.md`` rule 4), and a C-STORE is answered only after its
row commits.

One exception, for speed: a SQLite index that is not durable (``--fsync
never``) commits on the event loop itself when the worker thread has nothing
to do. Such a commit never waits on the disk (no sync; WAL checkpoints are
left to the worker thread) nor on a lock (another process holding the
database sends the rows to the thread, which waits), so it costs about what
the hand-off to the thread and back costs, and a lock-step sender's instance
no longer waits for two thread wake-ups.

Queries (:meth:`ArchiveIndex.find`) select candidates with SQL on the unique
keys they name (UIDs and Patient ID, single values or UID lists) and apply
every matching key with :func:`dicomnet.dataset.matching.matches`, so wildcard, range
and PN rules are those of one documented module. Each level's answer carries
the requested keys from its own level and the levels above, and the counts
PS3.4 C.6 defines (Number of Study Related Instances and so on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dicomnet.archive.database import SQLITE_SCHEMA, Database, is_database_url, open_database
from dicomnet.dataset.charsets import response_character_set
from dicomnet.dataset.matching import key_text, matches

__all__ = [
    "ATTRIBUTES",
    "COMPUTED",
    "LEVELS",
    "TAGS",
    "UNIQUE_KEY",
    "ArchiveIndex",
    "IndexEntry",
    "entry_from_file",
    "matching_keys",
]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    # keyword: (level, column, VR)
    "PatientID": ("PATIENT", "patient_id", "LO"),
    "PatientName": ("PATIENT", "patient_name", "PN"),
    "PatientBirthDate": ("PATIENT", "birth_date", "DA"),
    "PatientSex": ("PATIENT", "sex", "CS"),
    "StudyInstanceUID": ("STUDY", "study_uid", "UI"),
    "StudyDate": ("STUDY", "study_date", "DA"),
    "StudyTime": ("STUDY", "study_time", "TM"),
    "AccessionNumber": ("STUDY", "accession_number", "SH"),
    "StudyID": ("STUDY", "study_id", "SH"),
    "StudyDescription": ("STUDY", "study_description", "LO"),
    "ReferringPhysicianName": ("STUDY", "referring_physician", "PN"),
    "SeriesInstanceUID": ("SERIES", "series_uid", "UI"),
    "Modality": ("SERIES", "modality", "CS"),
    "SeriesNumber": ("SERIES", "series_number", "IS"),
    "SeriesDescription": ("SERIES", "series_description", "LO"),
    "BodyPartExamined": ("SERIES", "body_part", "CS"),
    "SOPInstanceUID": ("IMAGE", "sop_instance_uid", "UI"),
    "SOPClassUID": ("IMAGE", "sop_class_uid", "UI"),
    "InstanceNumber": ("IMAGE", "instance_number", "IS"),
    "SpecificCharacterSet": ("IMAGE", "charset", "CS"),
}
"""The attributes the index stores and matches on, by level.

Text values are stored decoded (Unicode). Specific Character Set is stored at
every level (column ``charset``), as the set the level's values were decoded
with, so that a C-FIND response can declare the set of what it carries
(:mod:`dicomnet.dataset.charsets`); it is never a matching key."""

CHARSET = "SpecificCharacterSet"

COMPUTED = {
    "NumberOfPatientRelatedStudies": ("PATIENT", "IS"),
    "NumberOfPatientRelatedSeries": ("PATIENT", "IS"),
    "NumberOfPatientRelatedInstances": ("PATIENT", "IS"),
    "NumberOfStudyRelatedSeries": ("STUDY", "IS"),
    "NumberOfStudyRelatedInstances": ("STUDY", "IS"),
    "ModalitiesInStudy": ("STUDY", "CS"),
    "NumberOfSeriesRelatedInstances": ("SERIES", "IS"),
}
"""Attributes computed from the rows below an entity (PS3.4 C.3.4 optional keys)."""

UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

SCHEMA = SQLITE_SCHEMA
"""The index's tables, as created in SQLite (:mod:`dicomnet.archive.database`)."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stored instance: where it is, and the attributes the index keeps."""

    path: str
    size: int
    transfer_syntax: str
    sha256: str
    attributes: dict[str, str]
    source_ae_title: str = ""
    stored_at: float = field(default_factory=time.time)


TAGS: dict[int, str] = {
    0x00080005: "SpecificCharacterSet",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080020: "StudyDate",
    0x00080030: "StudyTime",
    0x00080050: "AccessionNumber",
    0x00080060: "Modality",
    0x00080090: "ReferringPhysicianName",
    0x00081030: "StudyDescription",
    0x0008103E: "SeriesDescription",
    0x00100010: "PatientName",
    0x00100020: "PatientID",
    0x00100030: "PatientBirthDate",
    0x00100040: "PatientSex",
    0x00180015: "BodyPartExamined",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200010: "StudyID",
    0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber",
}
"""The tag of every indexed attribute, for :mod:`dicomnet.dataset.attributes`."""


def entry_from_file(
    path: Path, size: int, transfer_syntax: str, sha256: str, source_ae_title: str = ""
) -> IndexEntry:
    """Read the indexed attributes from a stored Part 10 file (pixel data unread)."""
    from dicomnet.dataset.attributes import read_file_attributes

    found = read_file_attributes(path, TAGS)
    attributes = {keyword: found.get(keyword, "") for keyword in ATTRIBUTES}
    return IndexEntry(str(path), size, transfer_syntax, sha256, attributes, source_ae_title)


log = logging.getLogger("dicomnet.archive.index")

INSERT_ATTEMPTS = 3
CHECKPOINT_EVERY = 256
"""Transactions between two WAL checkpoints of an index that commits on the event
loop (the checkpoints run on the worker thread: they sync)."""
BUSY_TIMEOUT_MS = 60_000
"""How long the worker thread waits for another process's lock on the SQLite file."""
KNOWN_SERIES = 10_000
"""Series remembered as indexed (their parent rows are not written again); then forgotten."""
RETRYABLE = frozenset({"40001", "40P01"})
"""PostgreSQL serialization failure and deadlock: the transaction is tried again."""

_UPDATE_STUDY = (
    "UPDATE SET patient_pk = excluded.patient_pk, study_date = excluded.study_date,"
    " study_time = excluded.study_time, accession_number = excluded.accession_number,"
    " study_id = excluded.study_id, study_description = excluded.study_description,"
    " referring_physician = excluded.referring_physician, charset = excluded.charset"
)
_UPDATE_SERIES = (
    "UPDATE SET study_uid = excluded.study_uid, modality = excluded.modality,"
    " series_number = excluded.series_number, series_description = excluded.series_description,"
    " body_part = excluded.body_part, charset = excluded.charset"
)
"""With ``replace``, a replaced instance's study and series take its values."""

_Item = IndexEntry | Callable[[], IndexEntry]
_T = TypeVar("_T")


def _columns(level: str) -> list[tuple[str, str]]:
    return [(kw, column) for kw, (lvl, column, _) in ATTRIBUTES.items() if lvl == level]


class ArchiveIndex:
    """The SQLite index of one archive folder; use from one event loop.

    Parameters
    ----------
    path : path or URL
        The SQLite file (created with its schema if missing), or a
        ``postgresql://`` URL (:mod:`dicomnet.archive.database`).
    durable : bool
        A commit survives a power loss (default). False is for an archive
        that chose ``--fsync never``.
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        self.location = str(path)
        self.path = None if is_database_url(path) else Path(path)
        """The SQLite file, or None for PostgreSQL."""
        self.durable = durable
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dicomnet-index")
        self._db: Database | None = None
        self._pending: list[tuple[_Item, bool, asyncio.Future[str | None]]] = []
        self._lock = threading.Lock()
        self._flushing = False
        self.transactions = 0
        """Committed transactions, for tests and metrics (group commit shows as fewer)."""
        self._known_series: set[str] = set()
        """Series whose patient, study and series rows this index committed."""
        self._on_loop = self.path is not None and not durable
        """Commits may run on the event loop (SQLite, not durable)."""
        self._jobs = 0
        """Worker-thread jobs submitted and not yet done (counted on the event loop)."""
        self.loop_transactions = 0
        """Transactions committed on the event loop (for tests and metrics)."""
        self.checkpoints = 0
        """WAL checkpoints run by the index itself (when it commits on the loop)."""

    # -- the worker thread ---------------------------------------------------------------
    def _connect(self) -> Database:
        if self._db is None:
            self._db = open_database(self.location, durable=self.durable)
            if self._on_loop:
                self._db.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint
        return self._db

    async def _call(self, function: Any, *args: Any) -> Any:
        self._jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, function, *args
            )
        finally:
            self._jobs -= 1

    def _submit(self, loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> None:
        """Run ``function`` on the worker thread without awaiting it (counted in _jobs)."""
        self._jobs += 1
        future = loop.run_in_executor(self._executor, function, *args)
        future.add_done_callback(self._job_done)

    def _job_done(self, future: asyncio.Future[Any]) -> None:
        self._jobs -= 1
        if not future.cancelled() and future.exception() is not None:
            log.warning("index job failed: %s", future.exception())

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, on the worker thread: an index that
        commits on the event loop turns SQLite's automatic checkpoints (which sync)
        off and runs one every :data:`CHECKPOINT_EVERY` transactions here."""
        self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.checkpoints += 1

    async def run_on_index(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(db, *args)`` on the index's worker thread, between group commits.

        For the archive's own maintenance (retention, queues): ``db`` is the
        index's connection (:class:`dicomnet.archive.database.Database`);
        ``function`` manages its transactions and keeps them short, since
        arriving instances wait for it.
        """
        return await self._call(lambda: function(self._connect(), *args))  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Finish queued work and close the database."""
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- adding --------------------------------------------------------------------------
    async def add_file(
        self,
        path: Path,
        size: int,
        transfer_syntax: str,
        sha256: str,
        source_ae_title: str = "",
        *,
        replace: bool = False,
    ) -> str | None:
        """Index a stored file: its attributes are read on the index thread, in the
        same trip as the commit; as :meth:`add`."""
        return await self._enqueue(
            functools.partial(
                entry_from_file, path, size, transfer_syntax, sha256, source_ae_title
            ),
            replace,
        )

    async def add(self, entry: IndexEntry, *, replace: bool = False) -> str | None:
        """Index one instance; returns once its transaction has committed.

        When the index already holds the SOP Instance UID, its row is kept
        (or, with ``replace``, overwritten by this entry) and the path it had
        is returned; None when the instance is new.
        """
        return await self._enqueue(entry, replace)

    async def _enqueue(self, item: _Item, replace: bool) -> str | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()
        with self._lock:
            self._pending.append((item, replace, done))
            start = not self._flushing
            self._flushing = True
        if start:
            # At the end of this turn of the loop, not now: the instances completed
            # in the same turn join this transaction, for one thread wake-up.
            loop.call_soon(self._start_flush, loop)
        return await done

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._on_loop and not self._jobs and self._flush_on_loop(loop):
            return
        self._submit(loop, self._flush, loop)

    def _flush_on_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Commit the queued entries here, on the event loop; False leaves them to the
        worker thread (an entry still to be read from its file, or the database locked
        by another process). Only when no worker-thread job runs or waits."""
        with self._lock:
            batch = self._pending
            if not all(isinstance(item, IndexEntry) for item, _, _ in batch):
                return False
            self._pending = []
        entries = [(item, replace) for item, replace, _ in batch if isinstance(item, IndexEntry)]
        outcomes: list[tuple[asyncio.Future[str | None], str | None, BaseException | None]]
        try:
            previous = self._insert(entries, wait=False) if entries else []
        except _Busy:
            with self._lock:
                self._pending[:0] = batch
            return False
        except Exception as exc:  # sqlite3 and OS errors alike
            outcomes = [(done, None, exc) for _, _, done in batch]
        else:
            settled = zip(batch, previous, strict=True)
            outcomes = [(done, path, None) for (_, _, done), path in settled]
            if entries:
                self.loop_transactions += 1
                if self.transactions % CHECKPOINT_EVERY == 0:
                    self._submit(loop, self._checkpoint)
        with self._lock:
            self._flushing = False
        _settle_all(outcomes)
        return True

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit everything queued, batch after batch, until the queue is empty."""
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._flushing = False
                    return
            entries: list[tuple[IndexEntry, bool]] = []
            waiting: list[asyncio.Future[str | None]] = []
            outcomes: list[tuple[asyncio.Future[str | None], str | None, BaseException | None]]
            outcomes = []
            for item, replace, done in batch:
                try:
                    entries.append((item if isinstance(item, IndexEntry) else item(), replace))
                    waiting.append(done)
                except Exception as exc:  # an unreadable file fails alone
                    outcomes.append((done, None, exc))
            try:
                previous = self._insert(entries) if entries else []
            except Exception as exc:  # sqlite3, psycopg and OS errors alike
                outcomes.extend((done, None, exc) for done in waiting)
            else:
                settled = zip(waiting, previous, strict=True)
                outcomes.extend((done, path, None) for done, path in settled)
                if self._on_loop and entries and self.transactions % CHECKPOINT_EVERY == 0:
                    self._checkpoint()
            # one wake-up of the event loop per transaction, not one per row
            loop.call_soon_threadsafe(_settle_all, outcomes)

    def _insert(
        self, entries: list[tuple[IndexEntry, bool]], *, wait: bool = True
    ) -> list[str | None]:
        """Commit ``entries`` in one transaction; ``wait=False`` (SQLite only) raises
        :class:`_Busy` at once where another process holds the write lock."""
        db = self._connect()
        order = _lock_order(entries)
        for attempt in range(INSERT_ATTEMPTS):
            added: set[str] = set()
            if wait:
                db.begin()
            else:
                _begin_now(db)
            try:
                previous: list[str | None] = [None] * len(entries)
                for at in order:
                    entry, replace = entries[at]
                    previous[at] = self._insert_one(db, entry, replace, added)
                db.commit()
            except Exception as exc:
                db.rollback()
                if self._known_series:
                    # a series remembered may have been deleted meanwhile: the full path again
                    self._known_series.clear()
                    if attempt + 1 < INSERT_ATTEMPTS:
                        continue
                # Listeners sharing a PostgreSQL index may deadlock on one patient.
                if getattr(exc, "sqlstate", None) in RETRYABLE and attempt + 1 < INSERT_ATTEMPTS:
                    continue
                raise
            self.transactions += 1
            if len(self._known_series) > KNOWN_SERIES:
                self._known_series.clear()
            self._known_series |= added
            return previous
        raise AssertionError("unreachable")

    def _insert_one(
        self, db: Database, entry: IndexEntry, replace: bool, added: set[str]
    ) -> str | None:
        a = entry.attributes
        charset = a.get(CHARSET, "")
        series_uid = a["SeriesInstanceUID"]
        if replace or series_uid not in self._known_series:
            self._insert_parents(db, a, replace, charset)
            added.add(series_uid)
        values = (
            series_uid, a["SOPClassUID"], a["InstanceNumber"], entry.path,
            entry.size, entry.transfer_syntax, entry.sha256, entry.stored_at,
            entry.source_ae_title, charset, a["SOPInstanceUID"],
        )  # fmt: skip
        inserted = db.execute(
            "INSERT INTO instances (series_uid, sop_class_uid, instance_number, path, size,"
            " transfer_syntax, sha256, stored_at, source_ae_title, charset, sop_instance_uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sop_instance_uid) DO NOTHING",
            values,
        )
        if inserted.rowcount == 1:
            return None
        row = db.execute(
            "SELECT path FROM instances WHERE sop_instance_uid = ?", (a["SOPInstanceUID"],)
        ).fetchone()
        if replace:
            db.execute(
                "UPDATE instances SET series_uid = ?, sop_class_uid = ?, instance_number = ?,"
                " path = ?, size = ?, transfer_syntax = ?, sha256 = ?, stored_at = ?,"
                " source_ae_title = ?, charset = ? WHERE sop_instance_uid = ?",
                values,
            )
        return str(row[0])

    @staticmethod
    def _insert_parents(db: Database, a: dict[str, str], replace: bool, charset: str) -> None:
        """The patient, study and series rows of an instance (kept, or updated under replace)."""
        db.execute(
            "INSERT INTO patients (patient_id, patient_name, birth_date, sex, charset)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient_id, patient_name) DO NOTHING",
            (a["PatientID"], a["PatientName"], a["PatientBirthDate"], a["PatientSex"], charset),
        )
        (patient_pk,) = db.execute(
            "SELECT pk FROM patients WHERE patient_id = ? AND patient_name = ?",
            (a["PatientID"], a["PatientName"]),
        ).fetchone()
        db.execute(
            "INSERT INTO studies (study_uid, patient_pk, study_date, study_time,"
            " accession_number, study_id, study_description, referring_physician, charset)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO "
            + (_UPDATE_STUDY if replace else "NOTHING"),
            (
                a["StudyInstanceUID"], patient_pk, a["StudyDate"], a["StudyTime"],
                a["AccessionNumber"], a["StudyID"], a["StudyDescription"],
                a["ReferringPhysicianName"], charset,
            ),
        )  # fmt: skip
        db.execute(
            "INSERT INTO series (series_uid, study_uid, modality, series_number,"
            " series_description, body_part, charset) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (series_uid) DO " + (_UPDATE_SERIES if replace else "NOTHING"),
            (
                a["SeriesInstanceUID"], a["StudyInstanceUID"], a["Modality"],
                a["SeriesNumber"], a["SeriesDescription"], a["BodyPartExamined"], charset,
            ),
        )  # fmt: skip

    # -- reading -------------------------------------------------------------------------
    async def find(self, level: str, keys: dict[str, tuple[str, str]]) -> list[dict[str, str]]:
        """Entities at ``level`` matching ``keys`` (keyword: (value, VR)), with their values.

        Each result maps every stored and computed keyword of ``level`` and
        the levels above it to its value.
        """
        return await self._call(self._find, level, keys)  # type: ignore[no-any-return]

    async def instances(self, level: str, keys: dict[str, tuple[str, str]]) -> list[str]:
        """Paths of the instances below the entities matching ``keys`` (C-MOVE, C-GET)."""
        return await self._call(self._instances, level, keys)  # type: ignore[no-any-return]

    async def path_of(self, sop_instance_uid: str) -> Path | None:
        """The stored file of an instance, or None when the index does not hold it."""
        return await self._call(self._path_of, sop_instance_uid)  # type: ignore[no-any-return]

    def _path_of(self, sop_instance_uid: str) -> Path | None:
        row = (
            self._connect()
            .execute("SELECT path FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,))
            .fetchone()
        )
        return Path(row[0]) if row else None

    async def count(self) -> int:
        """Instances indexed."""
        return await self._call(self._count)  # type: ignore[no-any-return]

    def _count(self) -> int:
        return int(self._connect().execute("SELECT count(*) FROM instances").fetchone()[0])

    def _rows(self, level: str, keys: dict[str, tuple[str, str]]) -> list[dict[str, str]]:
        depth = LEVELS.index(level)
        tables = [
            ("PATIENT", "patients p", ""),
            ("STUDY", "studies st", "st.patient_pk = p.pk"),
            ("SERIES", "series se", "se.study_uid = st.study_uid"),
            ("IMAGE", "instances i", "i.series_uid = se.series_uid"),
        ][: depth + 1]
        alias = {"PATIENT": "p", "STUDY": "st", "SERIES": "se", "IMAGE": "i"}
        selected = [
            f'{alias[lvl]}.{column} AS "{kw}"'
            for kw, (lvl, column, _) in ATTRIBUTES.items()
            if LEVELS.index(lvl) <= depth and kw != CHARSET
        ]
        selected += [f'{alias[lvl]}.charset AS "_charset_{lvl}"' for lvl in LEVELS[: depth + 1]]
        if depth == 3:
            selected.append("i.path AS _path")
        sql = f"SELECT {', '.join(selected)} FROM {tables[0][1]}"
        for _, table, join in tables[1:]:
            sql += f" JOIN {table} ON {join}"
        where, params = [], []
        for keyword, (value, vr) in keys.items():
            spec = ATTRIBUTES.get(keyword)
            if spec is None or LEVELS.index(spec[0]) > depth or not value:
                continue
            column = f"{alias[spec[0]]}.{spec[1]}"
            if vr == "UI" and "*" not in value and "?" not in value:
                uids = [uid.strip() for uid in value.split("\\")]
                where.append(f"{column} IN ({', '.join('?' * len(uids))})")
                params.extend(uids)
            elif keyword == "PatientID" and not any(c in value for c in "*?"):
                where.append(f"{column} = ?")
                params.append(value.rstrip(" "))
        if where:
            sql += " WHERE " + " AND ".join(where)
        cursor = self._connect().execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, (v or "" for v in row), strict=True)) for row in cursor]

    def _find(self, level: str, keys: dict[str, tuple[str, str]]) -> list[dict[str, str]]:
        results = []
        # The levels whose values a response carries: their character sets count.
        returned = [k for k in keys if k in ATTRIBUTES and k != CHARSET]
        levels = {ATTRIBUTES[k][0] for k in returned}
        for row in self._rows(level, keys):
            charsets = {lvl: row.pop(f"_charset_{lvl}", "") for lvl in LEVELS}
            if all(
                matches(value, vr, row[keyword])
                for keyword, (value, vr) in keys.items()
                if keyword in row
            ):
                row[CHARSET] = response_character_set(
                    [charsets[lvl] for lvl in levels], [row.get(k, "") for k in returned]
                )
                row.update(self._computed(level, row))
                results.append(row)
        if level != "IMAGE":
            results = list({row[UNIQUE_KEY[level]]: row for row in results}.values())
        computed_keys = {k: v for k, v in keys.items() if k in COMPUTED and v[0]}
        return [
            row
            for row in results
            if all(matches(value, vr, row.get(k, "")) for k, (value, vr) in computed_keys.items())
        ]

    def _computed(self, level: str, row: dict[str, str]) -> dict[str, Any]:
        db = self._connect()
        if level == "STUDY":
            uid = row["StudyInstanceUID"]
            series, instances = db.execute(
                "SELECT count(DISTINCT se.series_uid), count(i.sop_instance_uid) FROM series se"
                " LEFT JOIN instances i ON i.series_uid = se.series_uid WHERE se.study_uid = ?",
                (uid,),
            ).fetchone()
            modalities = [
                m
                for (m,) in db.execute(
                    "SELECT DISTINCT modality FROM series WHERE study_uid = ? ORDER BY modality",
                    (uid,),
                )
                if m
            ]
            return {
                "NumberOfStudyRelatedSeries": str(series),
                "NumberOfStudyRelatedInstances": str(instances),
                "ModalitiesInStudy": modalities,
            }
        if level == "SERIES":
            (count,) = db.execute(
                "SELECT count(*) FROM instances WHERE series_uid = ?", (row["SeriesInstanceUID"],)
            ).fetchone()
            return {"NumberOfSeriesRelatedInstances": str(count)}
        if level == "PATIENT":
            studies, series, instances = db.execute(
                "SELECT count(DISTINCT st.study_uid), count(DISTINCT se.series_uid),"
                " count(i.sop_instance_uid) FROM patients p JOIN studies st ON st.patient_pk = p.pk"
                " LEFT JOIN series se ON se.study_uid = st.study_uid"
                " LEFT JOIN instances i ON i.series_uid = se.series_uid WHERE p.patient_id = ?",
                (row["PatientID"],),
            ).fetchone()
            return {
                "NumberOfPatientRelatedStudies": str(studies),
                "NumberOfPatientRelatedSeries": str(series),
                "NumberOfPatientRelatedInstances": str(instances),
            }
        return {}

    def _instances(self, level: str, keys: dict[str, tuple[str, str]]) -> list[str]:
        image_keys = {k: v for k, v in keys.items() if k not in COMPUTED}
        return [row["_path"] for row in self._find("IMAGE", image_keys)]


class _Busy(Exception):
    """Another process holds the SQLite file's write lock."""


def _begin_now(db: Database) -> None:
    """BEGIN IMMEDIATE without waiting for another process's lock (:class:`_Busy`)."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.begin()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise _Busy from None
        raise
    finally:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _settle_all(
    outcomes: list[tuple[asyncio.Future[str | None], str | None, BaseException | None]],
) -> None:
    for done, result, error in outcomes:
        _settle(done, result, error)


def _settle(
    done: asyncio.Future[str | None], result: str | None, error: BaseException | None
) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def matching_keys(identifier: Any) -> dict[str, tuple[str, str]]:
    """``keyword: (value, VR)`` for every element of a query identifier."""
    keys: dict[str, tuple[str, str]] = {}
    for element in identifier:
        if element.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet", ""):
            continue
        text = "" if element.VR == "SQ" else key_text(element.value)
        keys[element.keyword] = (text, element.VR)
    return keys


def _lock_order(entries: list[tuple[IndexEntry, bool]]) -> list[int]:
    """The positions of ``entries`` in the order their rows are written.

    Each row takes its patient, study, series and instance rows' locks in that
    order; written sorted by those keys, every transaction takes its locks in
    one order, so listeners sharing a PostgreSQL index never deadlock on a
    batch (two nodes each starting the same two new series, in opposite
    orders, did: PostgreSQL broke the tie after ``deadlock_timeout``, 1 s).
    """

    def key(at: int) -> tuple[str, ...]:
        a = entries[at][0].attributes
        return (
            a["PatientID"],
            a["PatientName"],
            a["StudyInstanceUID"],
            a["SeriesInstanceUID"],
            a["SOPInstanceUID"],
        )

    return sorted(range(len(entries)), key=key)
