"""A C-STORE SCP that receives every dataset and keeps nothing.

The twin of DCMTK's ``storescp --ignore``: the network and protocol cost of
ingestion without the disk, for benchmarks and for testing a sender.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass
from typing import Any

from dicomnet.core.status import SUCCESS
from dicomnet.net.association import IncomingRequest
from dicomnet.net.provider import DatasetSink, StoreObserver
from dicomnet.services.store_events import dataset_started, report_store

__all__ = ["DiscardStorage"]


class _NullSink:
    """Counts the bytes of one dataset and drops them.

    A file sink onto ``/dev/null``: the codec's pump "writes" the fragments
    there in one ``writev`` per receive buffer, which the kernel drops
    without copying, instead of a Python call per fragment.
    """

    __slots__ = ("_owner", "committing", "size", "started")

    head_length = 0
    wants_digest = False

    def __init__(self, owner: DiscardStorage) -> None:
        self._owner = owner  # keeps its /dev/null descriptor open while the sink lives
        self.size = 0
        self.started = time.monotonic()
        self.committing = False

    def fileno(self) -> int:
        return self._owner.null

    def finished(self, size: int, error: int, digest: bytes, head: bytes) -> None:
        self.size = size

    def write(self, fragment: Any) -> None:
        self.size += len(fragment)

    def discard(self) -> None:
        """Nothing was kept."""


@dataclass(frozen=True, slots=True)
class _Received:
    """What an event reports of a discarded instance: its size, no file, no digest."""

    size: int
    sha256: str = ""
    path: str = ""


class DiscardStorage:
    """Answers Success to every C-STORE after receiving it whole; stores nothing.

    A :class:`dicomnet.net.provider.StoreProvider`.

    Attributes
    ----------
    instances, bytes : int
        What was received so far.
    """

    def __init__(self) -> None:
        self.null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        """Where the pump sends what it receives (closed with the storage)."""
        weakref.finalize(self, os.close, self.null)
        self.instances = 0
        self.bytes = 0
        self.observers: list[StoreObserver] = []
        """Told of every C-STORE answered (:mod:`dicomnet.services.store_events`)."""

    def attach(self, listener: Any) -> None:
        """Serve C-STORE on ``listener`` with this provider."""
        listener.dataset_sink = self.sink
        listener.on_c_store(self.handle)
        listener.observers.append(self)

    def request_refused(self, association: Any, request: IncomingRequest, status: int) -> None:
        """A C-STORE the listener refused before the handler is still one answered."""
        if getattr(request.message, "command_field", None) == 0x0001:
            report_store(self.observers, request, status, None, dataset_started(request))

    def sink(
        self, association: Any, context_id: int, command: dict[int, Any]
    ) -> DatasetSink | None:
        """A sink that only counts, for every dataset."""
        return _NullSink(self)

    async def handle(self, request: IncomingRequest) -> int:
        """Answer Success for a discarded instance, after telling the observers."""
        received = request.raw_dataset
        size = received.size if isinstance(received, _NullSink) else len(received or b"")
        self.instances += 1
        self.bytes += size
        report_store(self.observers, request, SUCCESS, _Received(size), dataset_started(request))
        return SUCCESS
