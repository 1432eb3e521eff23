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
queue and the worker opens a new association (a bounded number of times), so
one dropped connection costs a retry, not the files.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.status import StatusClass, status_class
from dicomnet.dataset.part10 import FIRST_READ, FileMeta, Part10Error, parse_file_meta
from dicomnet.dataset.transcode import warm_up
from dicomnet.errors import AssociationAborted, ConnectionClosed, DicomNetError, RequestTimeout
from dicomnet.net import client
from dicomnet.net.store_client import storage_contexts

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
    """Read the meta group of every file; folders only with ``recursive``."""
    jobs: list[StoreJob] = []
    unreadable: list[tuple[Path, str]] = []
    candidates: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not recursive:
                unreadable.append((path, "is a folder (use --recursive)"))
                continue
            candidates.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        else:
            candidates.append(path)
    for path in candidates:
        try:
            with open(path, "rb", buffering=0) as stream:
                meta = parse_file_meta(stream.read(FIRST_READ), stream)
                size = os.fstat(stream.fileno()).st_size - meta.dataset_offset
        except (OSError, Part10Error) as exc:
            unreadable.append((path, str(exc)))
            continue
        jobs.append(StoreJob(path, meta.sop_class_uid, meta.transfer_syntax, size, meta))
    return jobs, unreadable


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
    import multiprocessing

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
    window: int = 16,
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
    queue: asyncio.Queue[StoreJob] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    options = dict(connect_options)
    # the caller's, if given
    contexts = options.pop("contexts", None) or proposed_contexts(jobs, allow_lossy=allow_lossy)
    if max_pdu_length:
        options["max_pdu_length"] = max_pdu_length

    def report(job: StoreJob, status: int | None, error: str | None) -> None:
        if error is None and status is not None and status_class(status) is not StatusClass.FAILURE:
            outcome.succeeded.append((job, status))
            outcome.bytes_sent += job.size
        else:
            outcome.failed.append((job.path, error or f"status 0x{status or 0:04X}"))
        if progress is not None:
            progress(job, status, error)

    async def send_one(assoc: client.ClientConnection, job: StoreJob) -> None:
        try:
            # path-like, with its meta group
            response = await assoc.store(job, allow_lossy=allow_lossy, executor=executor)
        except (AssociationAborted, ConnectionClosed, RequestTimeout):
            raise
        except DicomNetError as exc:
            report(job, None, str(exc))
            return
        report(job, int(response.status), None)

    async def worker() -> None:
        failures = 0
        while not queue.empty():
            try:
                assoc = await client.connect(
                    host,
                    port,
                    contexts=contexts,
                    max_operations_invoked=window,
                    **options,
                )
            except DicomNetError as exc:
                failures += 1
                if failures > retries:
                    while not queue.empty():
                        report(queue.get_nowait(), None, f"association failed: {exc}")
                    return
                continue
            broken = await drain(assoc)
            if broken is None:
                await assoc.release()
                continue
            failures += 1
            await assoc.abort()
            if failures > retries:
                while not queue.empty():
                    report(queue.get_nowait(), None, f"association failed: {broken}")
                return

    async def drain(assoc: client.ClientConnection) -> BaseException | None:
        """Send from the queue until it is empty; the error that broke the association."""
        in_flight: dict[asyncio.Task[None], StoreJob] = {}
        broken: BaseException | None = None
        while (not queue.empty() or in_flight) and broken is None:
            while not queue.empty() and len(in_flight) < max(window, 1):
                job = queue.get_nowait()
                in_flight[asyncio.ensure_future(send_one(assoc, job))] = job
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                job = in_flight.pop(task)
                error = task.exception()
                if error is not None:
                    broken = error
                    queue.put_nowait(job)  # never acknowledged: send it again
        for task, job in in_flight.items():
            task.cancel()
            queue.put_nowait(job)
        return broken

    await asyncio.gather(*(worker() for _ in range(max(associations, 1))))
    return outcome
