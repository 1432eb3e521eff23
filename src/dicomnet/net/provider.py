"""The C-STORE provider contract: where a received dataset goes, and who answers it.

Theory of operation
-------------------
A C-STORE-RQ's dataset may be gigabytes, so a provider does not wait for it in
memory. When the command set completes (PS3.7 9.3.1.1), the association asks
the listener's sink factory, ``provider.sink(association, context_id,
command)``, for a :class:`DatasetSink`; every P-DATA fragment of the dataset
(PS3.8 Annex E) is then written to that sink as it arrives, while the
codec's view of the receive buffer is still valid. When the last fragment is
in, the request reaches ``provider.handle(request)`` with the sink as its
``raw_dataset``; the handler makes the instance durable (or not) and returns
the C-STORE status (PS3.4 B.2.3). A :class:`StoreEvent` then goes to each of
the provider's ``observers``.

Who ends a sink
~~~~~~~~~~~~~~~
Exactly one party disposes of a sink's contents:

* the transport calls :meth:`DatasetSink.discard` when the association ends
  before the dataset's last fragment (an abort, a dropped connection, an
  invalid PDU);
* the association calls it when the request ends without its handler having
  taken the sink over (the association ended while the request waited);
* otherwise the handler owns the sink: it sets ``committing`` once it has
  taken the dataset over, and the association leaves it alone from then on.

A receive pump that writes straight to a file
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
:class:`FileDatasetSink` is the optional extension for a sink backed by one
open file: the codec's data-phase pump (``Assembler.pump``) writes a
dataset's fragments to :meth:`~FileDatasetSink.fileno` itself, straight from
the receive buffer, with no Python call or object per fragment, hashes them
on the way when the sink asks for it, keeps the dataset's first
``head_length`` bytes, and reports once, when the last fragment is in, with
:meth:`~FileDatasetSink.finished`. A sink without ``fileno`` is written
through :meth:`DatasetSink.write`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from dicomnet.core.status import STORED_STATUSES

__all__ = [
    "DatasetSink",
    "FileDatasetSink",
    "SinkFactory",
    "StoreEvent",
    "StoreObserver",
    "StoreProvider",
]


class DatasetSink(Protocol):
    """Receives the fragments of one dataset as they arrive.

    Attributes
    ----------
    size : int
        Dataset bytes received so far (fragments dropped after an error too,
        where the sink counts them): what the C-STORE's event reports when
        no instance record exists.
    started : float
        ``time.monotonic()`` when the dataset's first byte was expected (the
        command set completed): the start of the C-STORE's duration.
    committing : bool
        False until a handler takes the dataset over; then the association
        no longer discards it when the request ends early.
    """

    size: int
    started: float
    committing: bool

    def write(self, fragment: Any) -> None:
        """Take one fragment, a buffer valid only during the call.

        Must not raise (the codec's contract, PS3.8 Annex E leaves no way to
        refuse a fragment): a sink records its first error, drops the rest and
        lets its handler answer a failure status.
        """

    def discard(self) -> None:
        """Forget the dataset: nothing it wrote stays visible. Idempotent."""


@runtime_checkable
class FileDatasetSink(DatasetSink, Protocol):
    """A :class:`DatasetSink` backed by one open file the codec's pump writes.

    The pump writes each fragment to :meth:`fileno` at the file's current
    offset (``write``/``writev``, never ``pwrite``: the sink wrote a header
    before the dataset), so the sink's own :meth:`~DatasetSink.write` is not
    called for that dataset. A failed write never raises: its errno reaches
    :meth:`finished` and the rest of the dataset is dropped.

    Attributes
    ----------
    head_length : int
        Bytes of the dataset's start the pump keeps in memory for
        :meth:`finished` (to read the header without reopening the file).
    wants_digest : bool
        The pump computes the dataset's SHA-256 while it writes it
        (``dicomnet.core.codec.PUMP_DIGEST`` says whether this codec can).
    """

    head_length: int
    wants_digest: bool

    def fileno(self) -> int:
        """The file descriptor the dataset goes to, positioned after the header."""

    def finished(self, size: int, error: int, digest: bytes, head: bytes) -> None:
        """The last fragment is in: ``size`` dataset bytes received, ``error``
        the errno of the first failed write (0: all written), ``digest`` the
        SHA-256 (``b""`` if not computed), ``head`` the first bytes. Must not raise."""


SinkFactory = Callable[[Any, int, dict[int, Any]], DatasetSink | None]
"""``factory(association, context_id, command)``: the sink for the dataset the
command set announces, or None to collect it in memory."""


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
    study_instance_uid: str = ""
    patient_id: str = ""

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
"""Told of every answered C-STORE; runs on the event loop and must not block."""


class StoreProvider(Protocol):
    """A C-STORE SCP: the sink factory and the handler, installed on a listener.

    :class:`dicomnet.services.storage.FolderStorage`,
    :class:`dicomnet.services.discard.DiscardStorage` and
    :class:`dicomnet.archive.archive.Archive` are providers; so may be user code.
    """

    @property
    def observers(self) -> list[StoreObserver]:
        """Told of every C-STORE answered (:mod:`dicomnet.services.store_events`);
        append to it to add one."""

    def attach(self, listener: Any) -> None:
        """Install :meth:`sink` as the listener's ``dataset_sink`` and
        :meth:`handle` as its C-STORE handler."""

    def sink(
        self, association: Any, context_id: int, command: dict[int, Any]
    ) -> DatasetSink | None:
        """A :data:`SinkFactory`: where this command's dataset goes (None: memory)."""

    def handle(self, request: Any) -> Awaitable[int]:
        """Answer a C-STORE whose dataset is in; the status (PS3.4 B.2.3).

        ``request`` is a :class:`dicomnet.net.association.IncomingRequest`
        (typed ``Any`` here only because the association, which imports this
        module, defines it); its ``raw_dataset`` is the sink :meth:`sink`
        returned, or the bytes collected in memory when it returned None.
        """
