"""Sending many Part 10 files over several associations, pipelined.

Theory of operation
-------------------
The files' meta groups are read first (no pydicom) to learn which SOP classes
and transfer syntaxes to propose: each SOP class gets one context offering the
files' own transfer syntaxes and one offering those dicomnet can convert them
to (:func:`dicomnet.net.store_client.storage_contexts`); a file whose own
syntax the peer refused is converted off the event loop, in a process pool
when asked, since the pixel codecs hold the GIL. ``associations`` workers
then share one queue of files; each
keeps up to the negotiated window of C-STOREs outstanding. When an
association fails, the files it had not seen acknowledged go back on the
queue and the worker opens a new association, so one dropped connection costs
a retry, not the files. ``retries`` bounds the attempts in a row that get no
file answered (a failed connect, a rejection, a break before any response);
an association that moved files starts the count again. Between such
attempts the worker waits, longer each time (0.25 s doubling to 8 s, with
jitter), so a peer that is down for a few seconds (a node restarting, a load
balancer with no healthy server yet) is waited for rather than every attempt
being spent in a millisecond, and the workers do not knock in step.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core import dimse
from dicomnet.core.status import StatusClass, status_class
from dicomnet.dataset.part10 import FIRST_READ, FileMeta, Part10Error, parse_file_meta
from dicomnet.dataset.transcode import warm_up
from dicomnet.errors import AssociationAborted, ConnectionClosed, DicomNetError, RequestTimeout
from dicomnet.net import client
from dicomnet.net.requests import OutgoingRequest
from dicomnet.net.store_client import PreparedStore, plan_store, storage_contexts

__all__ = [
    "StoreJob",
    "StoreOutcome",
    "collect_files",
    "conversion_pool",
    "proposed_contexts",
    "store_files",
]


@dataclass(frozen=True, slots=True)
class StoreJob:
    """One file to send, with what its meta group says.

    A job is path-like: ``store(job)`` sends its file using the meta group
    read here (``file_meta``) instead of reading it a second time.
    """

    path: Path
    sop_class_uid: str
    transfer_syntax: str
    size: int
    file_meta: FileMeta | None = None

    def __fspath__(self) -> str:
        return os.fspath(self.path)


@dataclass(slots=True)
class StoreOutcome:
    """What happened to every file of a run."""

    succeeded: list[tuple[StoreJob, int]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    bytes_sent: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_files(
    paths: Iterable[str | os.PathLike[str]], *, recursive: bool
) -> tuple[list[StoreJob], list[tuple[Path, str]]]:
    """Read the meta group of every file; folders only with ``recursive``.

    Folders are walked in name order (as ``sorted(Path.rglob("*"))`` would
    list them, symbolic links to folders not followed) with ``os.scandir``,
    which knows a file from a folder without a ``stat`` per entry; each file
    costs one open, one ``fstat`` and one read of its first 4 KB.
    """
    jobs: list[StoreJob] = []
    unreadable: list[tuple[Path, str]] = []
    candidates: list[str] = []
    for raw in paths:
        name = os.fspath(raw)
        if os.path.isdir(name):
            if not recursive:
                unreadable.append((Path(name), "is a folder (use --recursive)"))
                continue
            _walk(name, candidates)
        else:
            candidates.append(name)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for name in candidates:
        try:
            fd = os.open(name, flags)
            try:
                length = os.fstat(fd).st_size
                meta = parse_file_meta(os.read(fd, FIRST_READ), _Rest(fd))
            finally:
                os.close(fd)
        except (OSError, Part10Error) as exc:
            unreadable.append((Path(name), str(exc)))
            continue
        size = length - meta.dataset_offset
        jobs.append(StoreJob(Path(name), meta.sop_class_uid, meta.transfer_syntax, size, meta))
    return jobs, unreadable


def _walk(folder: str, found: list[str]) -> None:
    """Every file below ``folder``, in the order of their path components."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink():
                _walk(entry.path, found)
            elif entry.is_file():
                found.append(entry.path)
        except OSError:
            continue


class _Rest:
    """The rest of an open file, for a meta group longer than the first read."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int, /) -> bytes:
        return os.read(self.fd, size)


def proposed_contexts(
    jobs: Iterable[StoreJob], *, allow_lossy: bool = False
) -> list[tuple[str, list[str]]]:
    """Per SOP class: its files' own syntaxes, then what they can be converted to."""
    return storage_contexts(
        ((job.sop_class_uid, job.transfer_syntax) for job in jobs), allow_lossy=allow_lossy
    )


def conversion_pool(processes: int) -> Executor:
    """Where a run's conversions go: ``processes`` processes, or one thread when 0.

    The pixel codecs hold the GIL while they work, so only processes convert
    on several cores at once, and more than one thread only adds contention
    (bench/README.md). ``forkserver``: never fork a process whose event loop
    already runs threads.
    """
    if processes <= 0:
        return ThreadPoolExecutor(1, thread_name_prefix="dicomnet-convert")
    import multiprocessing  # here: a run that converts nothing does not pay for it
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context(method), initializer=warm_up
    )
    for _ in range(processes):
        pool.submit(int)  # start the workers (and their imports) now, beside negotiation
    return pool


async def store_files(
    host: str,
    port: int,
    jobs: list[StoreJob],
    *,
    associations: int = 1,
    window: int = 64,
    max_pdu_length: int = 0,
    retries: int = 3,
    progress: Callable[[StoreJob, int | None, str | None], None] | None = None,
    allow_lossy: bool = False,
    conversion_processes: int = 0,
    **connect_options: Any,
) -> StoreOutcome:
    """Send every job; ``progress(job, status, error)`` after each file.

    A file the peer cannot take in its own syntax is converted (lossy only
    with ``allow_lossy``) in ``conversion_processes`` processes, or in one
    thread beside the event loop when 0.
    """
    executor = conversion_pool(conversion_processes)
    try:
        return await _store_files(
            host,
            port,
            jobs,
            associations=associations,
            window=window,
            max_pdu_length=max_pdu_length,
            retries=retries,
            progress=progress,
            allow_lossy=allow_lossy,
            executor=executor,
            connect_options=connect_options,
        )
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


async def _store_files(
    host: str,
    port: int,
    jobs: list[StoreJob],
    *,
    associations: int,
    window: int,
    max_pdu_length: int,
    retries: int,
    progress: Callable[[StoreJob, int | None, str | None], None] | None,
    allow_lossy: bool,
    executor: Executor,
    connect_options: dict[str, Any],
) -> StoreOutcome:
    outcome = StoreOutcome()
    queue: deque[StoreJob] = deque(jobs)
    options = dict(connect_options)
    # the caller's, if given
    contexts = options.pop("contexts", None) or proposed_contexts(jobs, allow_lossy=allow_lossy)
    if max_pdu_length:
        options["max_pdu_length"] = max_pdu_length
    succeeded, failed = outcome.succeeded, outcome.failed

    def report(job: StoreJob, status: int | None, error: str | None) -> None:
        if error is None and status is not None and status_class(status) is not StatusClass.FAILURE:
            succeeded.append((job, status))
            outcome.bytes_sent += job.size
        else:
            failed.append((job.path, error or f"status 0x{status or 0:04X}"))
        if progress is not None:
            progress(job, status, error)

    async def worker() -> None:
        failures = 0  # attempts in a row that got no file answered
        while queue:
            try:
                assoc = await client.connect(
                    host,
                    port,
                    contexts=contexts,
                    max_operations_invoked=window,
                    **options,
                )
            except DicomNetError as exc:
                broken: BaseException | None = exc
            else:
                pipeline = _Pipeline(assoc, queue, max(window, 1), allow_lossy, executor, report)
                broken = await pipeline.run()
                if broken is None:
                    await assoc.release()
                    continue
                await assoc.abort()
                if pipeline.answered:
                    failures = 0
            failures += 1
            if failures > retries:
                while queue:
                    report(queue.popleft(), None, f"association failed: {broken}")
                return
            delay = retry_delay(failures)
            if delay and queue:
                await asyncio.sleep(delay)

    await asyncio.gather(*(worker() for _ in range(max(associations, 1))))
    return outcome


RETRY_DELAY_FIRST = 0.25
"""Seconds before the second attempt in a row without progress (the first is at once)."""
RETRY_DELAY_MAX = 8.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` attempts in a row without progress."""
    if failures <= 1:
        return 0.0
    ceiling = min(RETRY_DELAY_FIRST * 2.0 ** (failures - 2), RETRY_DELAY_MAX)
    return ceiling * (0.5 + random.random() / 2)  # jitter: workers do not retry in step


_BREAKING = (AssociationAborted, ConnectionClosed, RequestTimeout)
"""Errors that end the association, not just one instance: its file goes again."""


class _Pipeline:
    """Keeps ``window`` C-STOREs outstanding on one association, from a shared queue.

    No task and no coroutine per instance: a file whose own syntax was
    accepted is planned (opened and mapped) and its request enqueued on the
    association at once, and the request's completion, a plain future
    callback, reports it, releases the map and starts the next file. Several
    requests enqueued in one loop turn leave in one gathered write
    (:meth:`dicomnet.net.association.Association.send_request`). Only a file
    that must be converted waits on the executor.
    """

    __slots__ = (
        "_allow_lossy",
        "_assoc",
        "_done",
        "_executor",
        "_in_flight",
        "_issued",
        "_low",
        "_queue",
        "_report",
        "_window",
        "answered",
        "broken",
    )

    def __init__(
        self,
        assoc: client.ClientConnection,
        queue: deque[StoreJob],
        window: int,
        allow_lossy: bool,
        executor: Executor,
        report: Callable[[StoreJob, int | None, str | None], None],
    ) -> None:
        self._assoc = assoc
        self._queue = queue
        self._window = window
        self._low = window // 2 if window >= 4 else window - 1
        """Refill when no more than this many are outstanding."""
        self._allow_lossy = allow_lossy
        self._executor = executor
        self._report = report
        self._in_flight: dict[int, StoreJob] = {}
        """Jobs started and not yet answered, by a number of this run (jobs may repeat)."""
        self._issued = 0
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken: BaseException | None = None
        self.answered = 0
        """Files that got a final response (any status) on this association."""

    async def run(self) -> BaseException | None:
        """Send until the queue is empty; the error that broke the association, if any."""
        self._refill()
        if self._in_flight:
            await self._done
        self._queue.extend(self._in_flight.values())  # never acknowledged: send them again
        self._in_flight.clear()
        return self.broken

    def _refill(self) -> None:
        queue, in_flight = self._queue, self._in_flight
        # below the low mark only: the files started together leave in one write
        if len(in_flight) <= self._low:
            while queue and len(in_flight) < self._window and self.broken is None:
                self._start(queue.popleft())
        if (not in_flight or self.broken is not None) and not self._done.done():
            self._done.set_result(None)

    def _start(self, job: StoreJob) -> None:
        assoc = self._assoc
        try:
            plan = plan_store(assoc.negotiated, job, self._allow_lossy)
        except (DicomNetError, OSError, ValueError) as exc:  # e.g. the file went meanwhile
            self._report(job, None, str(exc))
            return
        self._issued += 1
        token = self._issued
        self._in_flight[token] = job
        if isinstance(plan, PreparedStore):
            self._send(token, job, plan)
            return
        converting = asyncio.get_running_loop().run_in_executor(self._executor, plan.run)
        converting.add_done_callback(functools.partial(self._converted, token, job))

    def _converted(
        self, token: int, job: StoreJob, converting: asyncio.Future[PreparedStore]
    ) -> None:
        error = None if converting.cancelled() else converting.exception()
        if token not in self._in_flight:
            if not converting.cancelled() and error is None:
                converting.result().close()
            return  # the association broke meanwhile
        if converting.cancelled() or error is not None:
            del self._in_flight[token]
            self._report(job, None, str(error) if error is not None else "conversion cancelled")
            self._refill()
            return
        self._send(token, job, converting.result())

    def _send(self, token: int, job: StoreJob, prepared: PreparedStore) -> None:
        message = dimse.CStoreRQ(
            message_id=0,
            affected_sop_class_uid=prepared.sop_class_uid,
            affected_sop_instance_uid=prepared.sop_instance_uid,
            has_dataset=True,
        )
        try:
            request = self._assoc.send_request(
                OutgoingRequest(message, prepared.data, context_id=prepared.context_id)
            )
        except DicomNetError as exc:  # the association ended under us
            prepared.close()
            del self._in_flight[token]
            self._queue.append(job)
            self.broken = exc
            self._refill()
            return
        request.completed.add_done_callback(
            functools.partial(self._completed, token, job, prepared)
        )

    def _completed(
        self, token: int, job: StoreJob, prepared: PreparedStore, completed: asyncio.Future[Any]
    ) -> None:
        prepared.close()
        if self._in_flight.pop(token, None) is None:
            return  # the run ended first (the association broke): the job is queued again
        error = None if completed.cancelled() else completed.exception()
        if error is None and not completed.cancelled():
            self.answered += 1
            self._report(job, int(completed.result().status), None)
        elif isinstance(error, DicomNetError) and not isinstance(error, _BREAKING):
            self._report(job, None, str(error))
        else:
            self._queue.append(job)
            if self.broken is None:
                self.broken = error or ConnectionClosed("the C-STORE was cancelled")
        self._refill()
