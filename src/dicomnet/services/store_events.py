"""What a listener tells operators: one event per C-STORE, one log line per association.

Theory of operation
-------------------
A storage handler (:class:`dicomnet.services.storage.FolderStorage`,
:class:`dicomnet.archive.archive.Archive`) builds a :class:`StoreEvent` for every
C-STORE it answers, once the status is known, and hands it to each of its
``observers``: callables such as :class:`EventLog` (a JSON-lines file, one
line per instance) or :class:`dicomnet.cli.metrics.ListenerMetrics`. The same
function counts the instance and its bytes on the association, which
:class:`AssociationLog` (a listener observer) reports in one line when the
association ends.

Observers run on the event loop and must not block: a JSON line goes to the
page cache through a line-buffered file, a metric is an increment.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any, TextIO

from dicomnet.core.status import STORED_STATUSES
from dicomnet.core.text import printable
from dicomnet.net.association import IncomingRequest
from dicomnet.net.listener import ServerAssociation
from dicomnet.net.provider import StoreEvent, StoreObserver

__all__ = [
    "AssociationLog",
    "EventLog",
    "StoreEvent",
    "StoreObserver",
    "dataset_started",
    "report_store",
    "source_ae_title",
]

association_log = logging.getLogger("dicomnet.associations")


def source_ae_title(association: object) -> str:
    """Who sent a stored instance (PS3.10 7.1 Source AE Title): the calling AE
    title of an association a listener accepted; "" on one this side opened
    (a C-GET), whose peer's title the association does not hold."""
    return association.calling_ae_title if isinstance(association, ServerAssociation) else ""


def dataset_started(request: IncomingRequest) -> float:
    """When the request's dataset began to arrive: its sink's ``started``, or now
    for a dataset collected in memory (the command and dataset came together)."""
    sink = request.raw_dataset
    if sink is None or isinstance(sink, (bytes, bytearray, memoryview)):
        return time.monotonic()
    started: float = sink.started
    return started


def report_store(
    observers: Iterable[StoreObserver],
    request: IncomingRequest,
    status: int,
    record: Any,
    started: float,
) -> None:
    """Count a C-STORE on its association and tell ``observers``.

    ``record`` is the :class:`dicomnet.services.storage.StoredInstance`, or None when
    the instance was refused before it had one; ``started`` is the
    ``time.monotonic()`` of the dataset's first byte.
    """
    association = request.association
    sink = request.raw_dataset
    if record is not None:
        size = record.size
    elif sink is None or isinstance(sink, (bytes, bytearray, memoryview)):
        size = len(sink or b"")
    else:
        size = sink.size
    if status in STORED_STATUSES and isinstance(association, ServerAssociation):
        association.instances += 1
        association.bytes += size
    observers = list(observers)
    if not observers:
        return
    message = request.message
    accepted = association if isinstance(association, ServerAssociation) else None
    event = StoreEvent(
        time=time.time(),
        association=accepted.number if accepted else 0,
        peer=accepted.peer if accepted else "",
        calling_ae_title=accepted.calling_ae_title if accepted else "",
        called_ae_title=accepted.called_ae_title if accepted else "",
        sop_class_uid=str(message.affected_sop_class_uid or ""),
        sop_instance_uid=str(message.affected_sop_instance_uid or ""),
        transfer_syntax=_transfer_syntax(request),
        bytes=size,
        sha256=record.sha256 if record is not None else "",
        duration=max(time.monotonic() - started, 0.0),
        status=status,
        path=str(record.path) if record is not None else "",
        study_instance_uid=record.attributes.get("StudyInstanceUID", "") if record else "",
        patient_id=record.attributes.get("PatientID", "") if record else "",
    )
    for observer in observers:
        try:
            observer(event)
        except Exception:
            logging.getLogger("dicomnet.services.store_events").exception(
                "store observer %r failed", observer
            )


def _transfer_syntax(request: Any) -> str:
    try:
        return str(request.transfer_syntax)
    except (KeyError, AttributeError):
        return ""


class EventLog:
    """Appends one JSON line per answered C-STORE to a file.

    The file is opened for appending and line-buffered, so every line reaches
    the operating system as it is written and several processes (``--workers``)
    can share one file: each line is a single ``write`` to an ``O_APPEND`` file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._stream: TextIO = open(self.path, "a", buffering=1, encoding="utf-8")

    def __call__(self, event: StoreEvent) -> None:
        self._stream.write(event.as_json() + "\n")

    def close(self) -> None:
        self._stream.close()


class AssociationLog:
    """A listener observer: one INFO line on ``dicomnet.associations`` per association.

    Accepted associations are logged when they end, with their peer, AE
    titles, the instances and bytes stored, the duration and how they ended;
    rejected ones when they are rejected, with the reason. The peer chose the
    AE titles, so they are escaped (:func:`dicomnet.core.text.printable`).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or association_log

    def association_rejected(self, association: Any, rejection: Any) -> None:
        self.log.info(
            "association %d from %s %s -> %s: rejected (result %d, source %d, reason %d)",
            association.number,
            association.peer,
            printable(association.calling_ae_title),
            printable(association.called_ae_title),
            int(rejection.result),
            int(rejection.source),
            int(rejection.reason),
        )

    def association_ended(self, association: Any, error: BaseException | None) -> None:
        self.log.info(
            "association %d from %s %s -> %s: %d instances, %d bytes, %.3f s, %s",
            association.number,
            association.peer,
            printable(association.calling_ae_title),
            printable(association.called_ae_title),
            association.instances,
            association.bytes,
            time.monotonic() - association.opened,
            "released" if error is None else f"ended: {error}",
        )
