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

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

__all__ = ["AssociationLog", "EventLog", "StoreEvent", "StoreObserver", "report_store"]

association_log = logging.getLogger("dicomnet.associations")

STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
"""Statuses after which the archive holds the instance."""


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One answered C-STORE, as the event log and the metrics see it."""

    time: float
    """Wall clock when the answer was decided (seconds since the epoch)."""
    association: int
    peer: str
    calling_ae_title: str
    called_ae_title: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    bytes: int
    sha256: str
    duration: float
    """Seconds from the dataset's first byte to the answer."""
    status: int
    path: str

    @property
    def stored(self) -> bool:
        return self.status in STORED_STATUSES

    def as_json(self) -> str:
        """One line of the event log: UTC time to the millisecond, status in hex."""
        fields = asdict(self)
        fields["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time)) + (
            f".{int(self.time % 1 * 1000):03d}Z"
        )
        fields["status"] = f"0x{self.status:04X}"
        fields["duration_ms"] = round(fields.pop("duration") * 1000, 3)
        return json.dumps(fields, separators=(",", ":"))


StoreObserver = Callable[[StoreEvent], None]
"""Called with each :class:`StoreEvent`, on the event loop: it must not block."""


def report_store(
    observers: Iterable[StoreObserver],
    request: Any,
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
    size = record.size if record is not None else int(getattr(request.raw_dataset, "size", 0))
    if status in STORED_STATUSES and hasattr(association, "instances"):
        association.instances += 1
        association.bytes += size
    observers = list(observers)
    if not observers:
        return
    message = request.message
    event = StoreEvent(
        time=time.time(),
        association=int(getattr(association, "number", 0)),
        peer=str(getattr(association, "peer", "")),
        calling_ae_title=str(getattr(association, "calling_ae_title", "")),
        called_ae_title=str(getattr(association, "called_ae_title", "")),
        sop_class_uid=str(message.affected_sop_class_uid or ""),
        sop_instance_uid=str(message.affected_sop_instance_uid or ""),
        transfer_syntax=_transfer_syntax(request),
        bytes=size,
        sha256=record.sha256 if record is not None else "",
        duration=max(time.monotonic() - started, 0.0),
        status=status,
        path=str(record.path) if record is not None else "",
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
        """Close the log file; events after this are an error."""
        self._stream.close()


class AssociationLog:
    """A listener observer: one INFO line on ``dicomnet.associations`` per association.

    Accepted associations are logged when they end, with their peer, AE
    titles, the instances and bytes stored, the duration and how they ended;
    rejected ones when they are rejected, with the reason.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or association_log

    def association_rejected(self, association: Any, rejection: Any) -> None:
        self.log.info(
            "association %d from %s %s -> %s: rejected (result %d, source %d, reason %d)",
            association.number,
            association.peer,
            association.calling_ae_title,
            association.called_ae_title,
            int(rejection.result),
            int(rejection.source),
            int(rejection.reason),
        )

    def association_ended(self, association: Any, error: BaseException | None) -> None:
        self.log.info(
            "association %d from %s %s -> %s: %d instances, %d bytes, %.3f s, %s",
            association.number,
            association.peer,
            association.calling_ae_title,
            association.called_ae_title,
            association.instances,
            association.bytes,
            time.monotonic() - association.opened,
            "released" if error is None else f"ended: {error}",
        )
