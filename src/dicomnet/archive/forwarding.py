"""Forwarding with a durable queue: every instance stored and matching a rule is sent on.

Theory of operation
-------------------
**Queueing.** Rules (a destination AE title, and optionally the calling AE
title, the modality and the SOP class an instance must have) live in the
index's ``forward_rules`` table. A trigger on ``instances`` (:func:`install`)
inserts one ``forward_queue`` row per matching destination **in the very
transaction that inserts the instance's row**: an instance acknowledged
(its row committed) always has its forwards queued, whatever process stored
it, and no code on the commit path knows about forwarding. A replaced
instance (new SHA-256) is queued again.

**Sending.** :class:`Forwarder` runs, per destination, a feeder and
``associations`` senders sharing an in-memory queue. The feeder reads due
rows (``next_attempt`` passed, not failed) it does not already hold; each
sender keeps an association open and up to ``window`` C-STOREs outstanding on
it (PS3.7 D.3.3.3 asynchronous operations; a peer that grants no window gets
one at a time), sending each file as its own bytes. Successes are recorded by
deleting their rows in one transaction per burst. **Nothing is resent once
its success is recorded**; a crash between a destination's Success and that
transaction (a few milliseconds) sends that instance again after the restart.

**Ingestion first.** While instances are arriving, the forwarder keeps to
one association with a small window (:data:`INGEST_WINDOW`), so receiving is
not slowed by sending on the same event loop and cores; when arrivals pause
it opens its pool and catches up.

**Retrying.** A failure status, a lost association or a destination that
refuses connections puts the item back with ``attempts + 1`` and
``next_attempt`` after an exponential backoff (1 s, 2 s, 4 s ... up to
``retry_max``), for as long as it takes. An instance the destination cannot
take in any transfer syntax dicomnet can convert to is marked ``failed``
with the reason and left for an operator (``dicomnet archive queue retry``):
trying again would not help.

Retention never deletes a study with rows in the queue
(:data:`dicomnet.archive.retention.PROTECTED`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dicomnet.archive.database import Database
from dicomnet.archive.index import ArchiveIndex

__all__ = ["ForwardRule", "Forwarder", "QueueItem", "install", "queue_summary"]

log = logging.getLogger("dicomnet.archive.forwarding")

_SELECT_MATCHES = """
    SELECT NEW.sop_instance_uid, se.study_uid, r.destination, NEW.stored_at
    FROM forward_rules r JOIN series se ON se.series_uid = NEW.series_uid
    WHERE (r.calling_ae = '' OR r.calling_ae = NEW.source_ae_title)
      AND (r.modality = '' OR r.modality = se.modality)
      AND (r.sop_class = '' OR r.sop_class = NEW.sop_class_uid)
    ON CONFLICT (sop_instance_uid, destination) DO UPDATE SET
      attempts = 0, next_attempt = 0, failed = 0, last_error = NULL
"""

_INSERT = "INSERT INTO forward_queue (sop_instance_uid, study_uid, destination, queued_at)"

SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS forward_on_insert AFTER INSERT ON instances BEGIN "
    + _INSERT + _SELECT_MATCHES + "; END",
    "CREATE TRIGGER IF NOT EXISTS forward_on_replace AFTER UPDATE OF sha256 ON instances"
    " WHEN NEW.sha256 <> OLD.sha256 BEGIN " + _INSERT + _SELECT_MATCHES + "; END",
)  # fmt: skip
"""The queueing triggers in SQLite."""

POSTGRES_TRIGGER = (
    "CREATE OR REPLACE FUNCTION dicomnet_forward() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN IF TG_OP = 'UPDATE' AND NEW.sha256 = OLD.sha256 THEN RETURN NEW; END IF; "
    + _INSERT + _SELECT_MATCHES + "; RETURN NEW; END $$",
    "CREATE OR REPLACE TRIGGER forward_on_change AFTER INSERT OR UPDATE ON instances"
    " FOR EACH ROW EXECUTE FUNCTION dicomnet_forward()",
)  # fmt: skip
"""The same in PostgreSQL (14 or later, for ``CREATE OR REPLACE TRIGGER``)."""

_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS forward_on_insert",
    "DROP TRIGGER IF EXISTS forward_on_replace",
)
_POSTGRES_DROP = ("DROP TRIGGER IF EXISTS forward_on_change ON instances",)

_TRIGGER_LOCK = 0x6469636F6D66776E
"""PostgreSQL advisory lock key held while replacing the trigger (b"dicomfwn")."""


@dataclass(frozen=True)
class ForwardRule:
    """Send instances to ``destination`` when every given criterion matches ("" = any)."""

    destination: str
    calling_ae: str = ""
    modality: str = ""
    sop_class: str = ""


def install(db: Database, rules: Iterable[ForwardRule]) -> None:
    """Make ``rules`` the index's rules, atomically, with the triggers that apply them;
    no rules drop the triggers, so an archive that does not forward pays nothing per row."""
    rules = list(rules)
    postgres = type(db).__name__.startswith("Postgres")
    db.begin()
    try:
        if postgres:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_TRIGGER_LOCK,))
            statements = POSTGRES_TRIGGER if rules else _POSTGRES_DROP
        else:
            statements = SQLITE_TRIGGERS if rules else _SQLITE_DROP
        for statement in statements:
            db.execute(statement)
        db.execute("DELETE FROM forward_rules")
        for rule in rules:
            db.execute(
                "INSERT INTO forward_rules (destination, calling_ae, modality, sop_class)"
                " VALUES (?, ?, ?, ?)",
                (rule.destination, rule.calling_ae, rule.modality, rule.sop_class),
            )
        db.commit()
    except Exception:
        db.rollback()
        raise


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One instance waiting for one destination."""

    pk: int
    sop_instance_uid: str
    path: str
    attempts: int
    sop_class_uid: str = ""
    transfer_syntax: str = ""

    def __fspath__(self) -> str:
        return self.path


def _due(db: Database, destination: str, now: float, limit: int, held: set[int]) -> list[QueueItem]:
    rows = db.execute(
        "SELECT q.pk, q.sop_instance_uid, i.path, q.attempts, i.sop_class_uid,"
        " i.transfer_syntax FROM forward_queue q"
        " LEFT JOIN instances i ON i.sop_instance_uid = q.sop_instance_uid"
        " WHERE q.destination = ? AND q.failed = 0 AND q.next_attempt <= ?"
        " ORDER BY q.pk LIMIT ?",
        (destination, now, limit + len(held)),
    ).fetchall()
    items, gone = [], []
    for pk, uid, path, attempts, sop_class, syntax in rows:
        if pk in held:
            continue
        if path is None:
            gone.append(pk)  # the instance is no longer indexed: nothing to send
            continue
        items.append(QueueItem(int(pk), uid, path, int(attempts), sop_class, syntax))
    if gone:
        _delete(db, gone)
    return items[:limit]


def _delete(db: Database, pks: list[int]) -> None:
    db.begin()
    try:
        for start in range(0, len(pks), 500):
            chunk = pks[start : start + 500]
            db.execute(
                f"DELETE FROM forward_queue WHERE pk IN ({', '.join('?' * len(chunk))})", chunk
            )
        db.commit()
    except Exception:
        db.rollback()
        raise


def _postpone(db: Database, failures: list[tuple[int, float, str, bool]]) -> None:
    """``(pk, next attempt, error, give up)`` for each item that failed."""
    db.begin()
    try:
        for pk, when, error, give_up in failures:
            db.execute(
                "UPDATE forward_queue SET attempts = attempts + 1, next_attempt = ?,"
                " last_error = ?, failed = ? WHERE pk = ?",
                (when, error[:500], 1 if give_up else 0, pk),
            )
        db.commit()
    except Exception:
        db.rollback()
        raise


_LEAD_LOCK = 0x6469636F6D6C6561
"""PostgreSQL advisory lock key of the sending forwarder (b"dicomlea")."""


def _take_lead(db: Database, location: str, held: list[Any]) -> bool:
    """Take the forwarder's lock if free; True when this process holds it."""
    if held:
        return True
    if type(db).__name__.startswith("Postgres"):
        (taken,) = db.execute("SELECT pg_try_advisory_lock(?)", (_LEAD_LOCK,)).fetchone()
        if taken:
            held.append(_Nothing())
        return bool(taken)
    import fcntl

    stream = open(location + ".forwarder.lock", "a+")
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.close()
        return False
    held.append(stream)
    return True


class _Nothing:
    def close(self) -> None:
        pass


def queue_summary(db: Database) -> dict[str, tuple[int, int, float | None]]:
    """Per destination: (waiting, failed, queued_at of the oldest waiting)."""
    return {
        destination: (int(waiting or 0), int(failed or 0), float(oldest) if oldest else None)
        for destination, waiting, failed, oldest in db.execute(
            "SELECT destination, sum(1 - failed), sum(failed), min(queued_at)"
            " FROM forward_queue GROUP BY destination"
        ).fetchall()
    }


INGEST_QUIET = 0.5
"""While instances arrive (one in the last half second), the forwarder keeps to one
association with a window of :data:`INGEST_WINDOW`: the archive's event loop and the
machine's cores go to ingestion first, and forwarding catches up when it pauses."""
INGEST_WINDOW = 1


def backoff(attempts: int, retry_max: float) -> float:
    """Seconds before the next try after ``attempts`` failures: 1, 2, 4 ... ``retry_max``."""
    return float(min(2 ** max(attempts, 0), retry_max))


@dataclass
class DestinationState:
    """What the forwarder knows of one destination (metrics, logs)."""

    name: str
    host: str
    port: int
    sent: int = 0
    failed: int = 0
    failures_in_a_row: int = 0
    waiting: int = 0
    failed_waiting: int = 0
    oldest: float | None = None
    held: set[int] = field(default_factory=set)


class Forwarder:
    """Sends the queue's items to their destinations with C-STORE (module docstring).

    Parameters
    ----------
    index : ArchiveIndex
    destinations : dict
        AE title -> (host, port).
    rules : iterable of ForwardRule
        Written to the index when the forwarder starts.
    calling_ae_title : str
        Our AE title on the associations we open.
    associations, window : int
        Associations per destination, and C-STOREs outstanding on each.
    retry_max : float
        Longest backoff between two tries, seconds.
    on_result : callable, optional
        ``(destination, sent: bool)`` after each instance (metrics).
    """

    def __init__(
        self,
        index: ArchiveIndex,
        destinations: dict[str, tuple[str, int]],
        rules: Iterable[ForwardRule],
        *,
        calling_ae_title: str = "DICOMNET",
        associations: int = 2,
        window: int = 8,
        retry_max: float = 300.0,
        poll_interval: float = 0.5,
        on_result: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.index = index
        self.rules = list(rules)
        unknown = {r.destination for r in self.rules} - set(destinations)
        if unknown:
            raise ValueError(
                f"forward rules name unknown destinations: {', '.join(sorted(unknown))}"
            )
        self.destinations = {
            name: DestinationState(name, host, port) for name, (host, port) in destinations.items()
        }
        self.calling_ae_title = calling_ae_title
        self.associations = max(associations, 1)
        self.window = max(window, 1)
        self.retry_max = retry_max
        self.poll_interval = poll_interval
        self.on_result = on_result
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_arrival = 0.0
        self._lock: list[Any] = []
        """The open lock file (SQLite), kept while this process leads."""
        self.leading = False

    async def start(self) -> None:
        """Write the rules, then send once this process leads (see :meth:`_lead`)."""
        await self.index.run_on_index(install, self.rules)
        for state in self.destinations.values():
            self._wake[state.name] = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._lead()))
        self._tasks.append(asyncio.create_task(self._measure()))

    async def _lead(self) -> None:
        """One forwarder per index sends: the holder of a lock, taken over when it dies.

        Processes sharing an index (``--workers``, listeners sharing a
        PostgreSQL index) all queue, and all try the lock every few seconds:
        a file lock beside an SQLite index, a session advisory lock on the
        index's PostgreSQL connection. Whoever holds it sends; the others
        never hold queue items, so nothing is sent twice by two processes.
        """
        while not await self.index.run_on_index(_take_lead, self.index.location, self._lock):
            await asyncio.sleep(5.0)
        log.info("forwarding to %s", ", ".join(sorted(self.destinations)))
        self.leading = True
        for state in self.destinations.values():
            self._tasks.append(asyncio.create_task(self._serve(state)))

    def wake(self, event: Any = None) -> None:
        """A store observer: something may have been queued; look now, not at the next poll."""
        if event is None or getattr(event, "stored", True):
            self._last_arrival = time.monotonic()
            for wake in self._wake.values():
                wake.set()

    @property
    def ingesting(self) -> bool:
        """Instances arrived in the last :data:`INGEST_QUIET` seconds: ingestion comes first."""
        return time.monotonic() - self._last_arrival < INGEST_QUIET

    async def close(self, timeout: float = 5.0) -> None:
        """Stop sending: what is in flight is put back in the queue (sent again later)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            if late:
                log.warning("forwarder: %d tasks still stopping after %.0f s", len(late), timeout)
        for stream in self._lock:
            stream.close()  # releases the file lock

    async def _measure(self) -> None:
        """Refresh queue depth and age for the metrics every second."""
        while True:
            try:
                summary = await self.index.run_on_index(queue_summary)
                for state in self.destinations.values():
                    state.waiting, state.failed_waiting, state.oldest = summary.get(
                        state.name, (0, 0, None)
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the forward queue failed")
            await asyncio.sleep(1.0)

    # -- one destination -----------------------------------------------------------------
    async def _serve(self, state: DestinationState) -> None:
        queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        senders = [
            asyncio.create_task(self._sender(state, queue, n)) for n in range(self.associations)
        ]
        try:
            while True:
                try:
                    await self._feed(state, queue)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("forwarding to %s: reading the queue failed", state.name)
                wake = self._wake[state.name]
                if self.ingesting:
                    # Each stored instance wakes the feeder; while they pour in, read
                    # the queue a few times a second, not once per instance: the
                    # index thread is the one committing them.
                    await asyncio.sleep(INGEST_QUIET / 2)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.poll_interval)
                wake.clear()
        finally:
            for sender in senders:
                sender.cancel()
            for sender in senders:
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    async def _feed(self, state: DestinationState, queue: asyncio.Queue[QueueItem]) -> None:
        room = self.associations * self.window * 4 - queue.qsize()
        if room <= 0:
            return
        items = await self.index.run_on_index(_due, state.name, time.time(), room, set(state.held))
        for item in items:
            state.held.add(item.pk)
            queue.put_nowait(item)

    async def _sender(
        self, state: DestinationState, queue: asyncio.Queue[QueueItem], number: int = 0
    ) -> None:
        from dicomnet.net import client

        while True:
            while number and self.ingesting:  # only the first sender while ingesting
                await asyncio.sleep(INGEST_QUIET)
            first = await queue.get()
            batch = [first]
            while not queue.empty() and len(batch) < self.window * 8:
                batch.append(queue.get_nowait())
            if queue.qsize() < self.window * 2:
                self._wake[state.name].set()  # running low: the feeder reads more
            try:
                contexts = _contexts(batch)
                assoc = await client.connect(
                    state.host,
                    state.port,
                    called_ae_title=state.name,
                    calling_ae_title=self.calling_ae_title,
                    contexts=contexts,
                    max_operations_invoked=self.window,
                )
            except asyncio.CancelledError:
                await self._settle(state, [], [(i, "cancelled", False) for i in batch], quiet=True)
                raise
            except Exception as exc:  # refused, unreachable, rejected: the destination is down
                state.failures_in_a_row += 1
                delay = backoff(state.failures_in_a_row - 1, self.retry_max)
                if state.failures_in_a_row in (1, 10) or state.failures_in_a_row % 100 == 0:
                    log.warning(
                        "forwarding to %s (%s:%d): %s; retrying in %.0f s",
                        state.name, state.host, state.port, exc, delay,
                    )  # fmt: skip
                await self._settle(state, [], [(i, f"association: {exc}", False) for i in batch])
                await asyncio.sleep(delay)
                continue
            state.failures_in_a_row = 0
            try:
                await self._send(state, assoc, batch, queue)
            finally:
                with contextlib.suppress(Exception):
                    await assoc.release()

    async def _send(
        self,
        state: DestinationState,
        assoc: Any,
        batch: list[QueueItem],
        queue: asyncio.Queue[QueueItem],
    ) -> None:
        """Send ``batch`` (and what arrives meanwhile, while its contexts fit) on ``assoc``."""
        from dicomnet.errors import AssociationAborted, ConnectionClosed, RequestTimeout
        from dicomnet.net.store_client import NoAcceptedContext

        pending = list(batch)
        in_flight: dict[asyncio.Task[Any], QueueItem] = {}
        sent: list[QueueItem] = []
        failed: list[tuple[QueueItem, str, bool]] = []
        broken: BaseException | None = None
        refill = True
        try:
            while (pending or in_flight) and broken is None:
                window = INGEST_WINDOW if self.ingesting else self.window
                while pending and len(in_flight) < window:
                    item = pending.pop(0)
                    in_flight[asyncio.ensure_future(assoc.store(item.path))] = item
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    item = in_flight.pop(task)
                    error = task.exception()
                    if error is None:
                        status = int(task.result().status)
                        if status in (0x0000, 0xB000, 0xB006, 0xB007):
                            sent.append(item)
                        else:
                            failed.append((item, f"status 0x{status:04X}", False))
                    elif isinstance(error, NoAcceptedContext):
                        failed.append((item, f"not sent: {error}", True))
                    elif isinstance(error, (AssociationAborted, ConnectionClosed, RequestTimeout)):
                        broken = error
                        failed.append((item, f"association: {error}", False))
                    elif isinstance(error, OSError):
                        failed.append((item, f"file: {error}", False))
                    else:
                        failed.append((item, f"{type(error).__name__}: {error}", False))
                if len(sent) >= self.window:  # recorded soon: a crash resends little
                    await self._settle(state, sent, [])
                    sent = []
                if len(pending) < self.window and broken is None and refill:
                    # Keep the window full with what the feeder queued meanwhile, as
                    # long as the association's contexts fit it.
                    fits = _contexts_of(assoc)
                    while not queue.empty() and len(pending) < self.window:
                        item = queue.get_nowait()
                        if fits is not None and not _covered([item], fits):
                            queue.put_nowait(item)  # for a new association
                            refill = False
                            break
                        pending.append(item)
                    if queue.qsize() < self.window * 2:
                        self._wake[state.name].set()  # running low: the feeder reads more
        finally:
            for task, item in in_flight.items():
                task.cancel()
                failed.append((item, "association ended", False))
            for item in pending:
                failed.append((item, "association ended", False))
            await self._settle(state, sent, failed)

    async def _settle(
        self,
        state: DestinationState,
        sent: list[QueueItem],
        failed: list[tuple[QueueItem, str, bool]],
        *,
        quiet: bool = False,
    ) -> None:
        """Record successes (rows deleted) and failures (backoff), then let the items go."""
        try:
            if sent:
                await self.index.run_on_index(_delete, [item.pk for item in sent])
            if failed:
                now = time.time()
                await self.index.run_on_index(
                    _postpone,
                    [
                        (item.pk, now + backoff(item.attempts, self.retry_max), error, give_up)
                        for item, error, give_up in failed
                    ],
                )
        finally:
            for item in sent:
                state.held.discard(item.pk)
            for item, _, _ in failed:
                state.held.discard(item.pk)
        state.sent += len(sent)
        state.failed += len(failed) if not quiet else 0
        for item, error, give_up in failed:
            if give_up:
                log.error(
                    "forwarding %s to %s failed for good: %s",
                    item.sop_instance_uid,
                    state.name,
                    error,
                )
        if self.on_result is not None:
            for _ in sent:
                self.on_result(state.name, True)
            if not quiet:
                for _ in failed:
                    self.on_result(state.name, False)


def _contexts(batch: list[QueueItem]) -> list[tuple[str, list[str]]]:
    """Contexts for the batch's SOP classes and transfer syntaxes, as the index has them."""
    from dicomnet.net.store_client import storage_contexts

    return storage_contexts(sorted({(i.sop_class_uid, i.transfer_syntax) for i in batch}))


def _contexts_of(assoc: Any) -> set[str] | None:
    try:
        return {c.abstract_syntax for c in assoc.negotiated.contexts.values()}
    except AttributeError:
        return None


def _covered(items: list[QueueItem], abstract_syntaxes: set[str]) -> bool:
    return all(item.sop_class_uid in abstract_syntaxes for item in items)


def _where(destination: str | None, uids: list[str]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if destination:
        clauses.append("destination = ?")
        params.append(destination)
    if uids:
        clauses.append(f"sop_instance_uid IN ({', '.join('?' * len(uids))})")
        params.extend(uids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def queue_items(db: Database, destination: str | None = None) -> list[dict[str, Any]]:
    """Every queued item (``dicomnet archive queue list --items``)."""
    where, params = _where(destination, [])
    names = ["destination", "sop_instance_uid", "study_uid", "queued_at", "attempts",
             "next_attempt", "last_error", "failed"]  # fmt: skip
    rows = db.execute(
        f"SELECT {', '.join(names)} FROM forward_queue{where} ORDER BY pk", params
    ).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def retry_items(db: Database, destination: str | None, uids: list[str]) -> int:
    """Make items due now, failed ones included; how many."""
    where, params = _where(destination, uids)
    db.begin()
    try:
        cursor = db.execute(
            f"UPDATE forward_queue SET next_attempt = 0, failed = 0, attempts = 0{where}", params
        )
        db.commit()
    except Exception:
        db.rollback()
        raise
    return int(cursor.rowcount)


def drop_items(db: Database, destination: str | None, uids: list[str], failed_only: bool) -> int:
    """Delete items from the queue; how many."""
    where, params = _where(destination, uids)
    if failed_only:
        where += (" AND" if where else " WHERE") + " failed = 1"
    db.begin()
    try:
        cursor = db.execute(f"DELETE FROM forward_queue{where}", params)
        db.commit()
    except Exception:
        db.rollback()
        raise
    return int(cursor.rowcount)
