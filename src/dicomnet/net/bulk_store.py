"""Sending many Part 10 files over several associations, pipelined.

Theory of operation
-------------------
The files' meta groups are read first (no pydicom) to learn which SOP classes
and transfer syntaxes to propose: each SOP class gets one context offering the
files' own transfer syntaxes and one offering the uncompressed ones dicomnet
can convert to. ``associations`` workers then share one queue of files; each
keeps up to the negotiated window of C-STOREs outstanding. When an
association fails, the files it had not seen acknowledged go back on the
queue and the worker opens a new association (a bounded number of times), so
one dropped connection costs a retry, not the files.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.status import StatusClass, status_class
from dicomnet.dataset.part10 import FIRST_READ, FileMeta, Part10Error, parse_file_meta
from dicomnet.errors import AssociationAborted, ConnectionClosed, DicomNetError, RequestTimeout
from dicomnet.net import client
from dicomnet.net.store_client import storage_contexts

__all__ = ["StoreJob", "StoreOutcome", "collect_files", "proposed_contexts", "store_files"]


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


def proposed_contexts(jobs: Iterable[StoreJob]) -> list[tuple[str, list[str]]]:
    """Per SOP class: its files' own syntaxes, then the uncompressed ones."""
    return storage_contexts((job.sop_class_uid, job.transfer_syntax) for job in jobs)


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
    **connect_options: Any,
) -> StoreOutcome:
    """Send every job; ``progress(job, status, error)`` after each file."""
    outcome = StoreOutcome()
    queue: asyncio.Queue[StoreJob] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    options = dict(connect_options)
    contexts = options.pop("contexts", None) or proposed_contexts(jobs)  # the caller's, if given
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
            response = await assoc.store(job)  # path-like, with its meta group
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
