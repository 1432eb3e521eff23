"""C-MOVE and C-GET: the SCP's sub-operations and the SCU's presentation contexts.

Theory of operation
-------------------
A retrieve SCP answers one C-MOVE-RQ or C-GET-RQ with a C-STORE sub-operation
per matching instance (PS3.4 C.4.2, C.4.3). The application decides *which*
instances; this module does the rest. A **selector** is
``async def select(request) -> instances`` where the instances are Part 10
file paths or pydicom Datasets (or a failure status int, or a
:class:`~dicomnet.net.association.Reply`, to refuse the request); the selector is
wrapped by :func:`c_get_handler` or :func:`c_move_handler` into an ordinary
streaming handler that:

* for C-GET, sends the C-STOREs to the requestor on the same association,
  on contexts where the requestor took the SCP role by role selection;
* for C-MOVE, opens an association from our AE title to the destination
  named by Move Destination, found in a table of AE titles (unknown: A801),
  and sends the C-STOREs there with the Move Originator fields set;
* keeps up to the negotiated window of sub-operations in flight and sends a
  Pending response with the four counters after each one completes;
* honours C-CANCEL between sub-operations with a final Cancel (FE00);
* ends with Success (0000), Warning B000 when some sub-operations failed or
  warned, or Failure A702 when every one failed; a final response other than
  Success carries the Failed SOP Instance UID List (0008,0058).

The final response carries no Number of Remaining Sub-operations except for
Cancel, as PS3.4 C.4.2.3.1 asks.

For the SCU, :func:`get_contexts` proposes the C-GET model and storage
classes with the SCP role, so a peer may send its sub-operations back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.pdu import RoleSelection
from dicomnet.core.status import (
    CANCEL,
    MOVE_DESTINATION_UNKNOWN,
    PENDING,
    SUCCESS,
    UNABLE_TO_PERFORM_SUBOPERATIONS,
    WARNING,
    StatusClass,
    status_class,
)
from dicomnet.core.text import printable
from dicomnet.core.uids import (
    ALL_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from dicomnet.dataset.part10 import Part10Error, read_file_meta
from dicomnet.errors import AssociationAborted, ConnectionClosed, DicomNetError
from dicomnet.net.association import Handler, IncomingRequest, Reply, as_reply
from dicomnet.net.store_client import storage_contexts

__all__ = [
    "COMMON_STORAGE_CLASSES",
    "MoveDestination",
    "Selector",
    "SubOperations",
    "c_get_handler",
    "c_move_handler",
    "get_contexts",
    "instance_identity",
]

log = logging.getLogger("dicomnet.net.retrieve")


COMMON_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image, For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image, For Processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image, For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image, For Processing
    "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray Image, For Presentation
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic Image
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8",  # RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.66.1",  # Spatial Registration
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG Waveform
)
"""Storage classes a C-GET SCU proposes by default (one context each)."""

Selector = Callable[[IncomingRequest], Awaitable[Any]]
"""``async def select(request)``: the instances to send (paths or Datasets), or a
failure status / :class:`Reply` refusing the request."""


@dataclass(frozen=True, slots=True)
class MoveDestination:
    """Where a C-MOVE SCP sends the instances for one destination AE title.

    Attributes
    ----------
    host, port : str, int
        The destination's address.
    ae_title : str, optional
        The called AE title to use; by default the Move Destination itself.
    max_operations_invoked : int
        The window of sub-operations to propose to the destination.
    """

    host: str
    port: int
    ae_title: str | None = None
    max_operations_invoked: int = 8


US_MAX = 0xFFFF
"""The largest value of a US element such as NumberOfCompletedSuboperations."""


@dataclass(slots=True)
class SubOperations:
    """The four counters of PS3.4 C.4.2.1.4, and the instances that failed."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def record(self, status: int | None, uid: str) -> None:
        """Count one finished sub-operation (None: it could not be sent)."""
        self.remaining -= 1
        kind = status_class(status) if status is not None else StatusClass.FAILURE
        if kind is StatusClass.SUCCESS:
            self.completed += 1
        elif kind is StatusClass.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            if uid:
                self.failed_uids.append(uid)

    def fail_rest(self, uids: Iterable[str]) -> None:
        """Every sub-operation not yet started failed (the destination is gone)."""
        for uid in uids:
            self.record(None, uid)

    def pending(self) -> Reply:
        return Reply(PENDING, None, self._counts(remaining=True))

    def final(self, *, cancelled: bool = False, status: int | None = None) -> Reply:
        """The final response: Cancel, a given status, or one the counters decide."""
        if cancelled:
            chosen = CANCEL
        elif status is not None:
            chosen = status
        elif not self.failed and not self.warning:
            chosen = SUCCESS
        elif self.failed and not self.completed and not self.warning:
            chosen = UNABLE_TO_PERFORM_SUBOPERATIONS
        else:
            chosen = WARNING
        identifier = None
        if chosen != SUCCESS and self.failed_uids:
            identifier = _failed_list(self.failed_uids)
        return Reply(chosen, identifier, self._counts(remaining=cancelled))

    def _counts(self, *, remaining: bool) -> dict[str, int]:
        """The counters as sent: US fields, so a retrieve of more than 65,535
        instances reports 65,535 rather than failing to encode its responses."""
        counts = {
            "number_of_completed_suboperations": min(self.completed, US_MAX),
            "number_of_failed_suboperations": min(self.failed, US_MAX),
            "number_of_warning_suboperations": min(self.warning, US_MAX),
        }
        if remaining:
            counts["number_of_remaining_suboperations"] = min(max(self.remaining, 0), US_MAX)
        return counts


def _failed_list(uids: Sequence[str]) -> Any:
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.FailedSOPInstanceUIDList = list(uids)
    return identifier


def instance_identity(source: Any) -> tuple[str, str, str]:
    """``(SOP Class UID, SOP Instance UID, transfer syntax)`` of a path or Dataset."""
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source), "rb") as stream:
            meta = read_file_meta(stream)
        return meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax
    dataset_meta = getattr(source, "file_meta", None)
    syntax = ""
    if dataset_meta is not None and "TransferSyntaxUID" in dataset_meta:
        syntax = str(dataset_meta.TransferSyntaxUID)
    return str(source.SOPClassUID), str(source.SOPInstanceUID), syntax


def _uid_of(source: Any) -> str:
    try:
        return instance_identity(source)[1]
    except (OSError, Part10Error, AttributeError, ValueError):
        return ""


def get_contexts(
    model: str,
    storage_classes: Iterable[str] = COMMON_STORAGE_CLASSES,
    transfer_syntaxes: Sequence[str] = ALL_TRANSFER_SYNTAXES,
    query_transfer_syntaxes: Sequence[str] = UNCOMPRESSED_TRANSFER_SYNTAXES,
) -> tuple[list[tuple[str, Sequence[str]]], list[RoleSelection]]:
    """Contexts and role selections for a C-GET SCU: ``connect(contexts=..., roles=...)``.

    Each storage class gets one context offering ``transfer_syntaxes`` and a
    role item asking for the SCP role only, so the peer may send us its
    C-STORE sub-operations. At most 127 storage classes fit beside the model.
    """
    classes = list(dict.fromkeys(storage_classes))
    if len(classes) > 126:
        raise ValueError(
            f"{len(classes)} storage classes and the C-GET model need more than the "
            "128 presentation contexts an association allows"
        )
    contexts: list[tuple[str, Sequence[str]]] = [(model, tuple(query_transfer_syntaxes))]
    contexts += [(uid, tuple(transfer_syntaxes)) for uid in classes]
    roles = [RoleSelection(uid, False, True) for uid in classes]
    return contexts, roles


# -- the SCP side -------------------------------------------------------------------------
StoreOne = Callable[[Any], Awaitable[int]]
"""Send one instance as a C-STORE sub-operation; the response status."""


async def _select(select: Selector, request: IncomingRequest) -> list[Any] | Reply:
    outcome = select(request)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if isinstance(outcome, (int, Reply)):
        return as_reply(outcome)
    if hasattr(outcome, "__aiter__"):
        return [item async for item in outcome]
    return list(outcome)


async def _suboperations(
    request: IncomingRequest,
    instances: list[Any],
    store_one: StoreOne,
    window: int,
    counters: SubOperations | None = None,
) -> AsyncIterator[Reply]:
    """Run the C-STOREs, up to ``window`` at once; a Pending reply after each.

    ``counters`` may already hold sub-operations that failed before any was sent.
    """
    counters = counters or SubOperations(len(instances))
    queue = list(reversed(instances))
    running: dict[asyncio.Task[int], Any] = {}
    broken: BaseException | None = None
    try:
        while (queue or running) and broken is None:
            while queue and len(running) < max(window, 1) and not request.cancelled:
                source = queue.pop()
                running[asyncio.ensure_future(store_one(source))] = source
            if not running:
                break  # cancelled before anything else started
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                source = running.pop(task)
                error = task.exception()
                if isinstance(error, (ConnectionClosed, AssociationAborted)):
                    broken = error
                    counters.record(None, _uid_of(source))
                    continue
                if error is not None:
                    log.info("sub-operation for %s failed: %s", _uid_of(source), error)
                    counters.record(None, _uid_of(source))
                    if counters.remaining > 0 and not request.cancelled:
                        yield counters.pending()
                    continue
                counters.record(task.result(), _uid_of(source))
                if counters.remaining > 0 and not request.cancelled:
                    yield counters.pending()
    finally:
        for task in running:
            task.cancel()
    if broken is not None:
        # The C-STORE association is gone: what was not sent has failed.
        for task in running:
            counters.record(None, _uid_of(running[task]))
        counters.fail_rest(_uid_of(source) for source in reversed(queue))
        yield counters.final()
        return
    if request.cancelled and queue:
        yield counters.final(cancelled=True)
        return
    yield counters.final()


def c_get_handler(select: Selector) -> Handler:
    """A C-GET handler sending ``select(request)``'s instances back on the association."""

    async def handle(request: IncomingRequest) -> AsyncIterator[Reply]:
        chosen = await _select(select, request)
        if isinstance(chosen, Reply):
            yield chosen
            return
        association = request.association

        async def store_one(source: Any) -> int:
            response = await association.store(source, priority=request.message.priority)
            return int(response.status)

        window = association.max_outstanding or 16
        async for reply in _suboperations(request, chosen, store_one, window):
            yield reply

    return handle


DestinationLookup = Callable[[str], MoveDestination | None]


def c_move_handler(
    select: Selector,
    destinations: DestinationLookup,
    *,
    calling_ae_title: Callable[[], str],
    connect_options: dict[str, Any] | None = None,
) -> Handler:
    """A C-MOVE handler sending ``select(request)``'s instances to the destination.

    Parameters
    ----------
    destinations : callable
        ``lookup(ae_title) -> MoveDestination | None``; None answers A801.
    calling_ae_title : callable
        Our AE title, as the calling AE of the sub-operation association.
    """

    async def handle(request: IncomingRequest) -> AsyncIterator[Reply]:
        message = request.message
        destination = destinations(message.move_destination)
        if destination is None:
            log.info(
                "C-MOVE to unknown destination %s", printable(message.move_destination, quote=True)
            )
            yield Reply(MOVE_DESTINATION_UNKNOWN)
            return
        chosen = await _select(select, request)
        if isinstance(chosen, Reply):
            yield chosen
            return
        if not chosen:
            yield SubOperations(0).final()
            return
        async for reply in _move(request, chosen, destination, calling_ae_title(), connect_options):
            yield reply

    return handle


async def _move(
    request: IncomingRequest,
    instances: list[Any],
    destination: MoveDestination,
    calling_ae_title: str,
    connect_options: dict[str, Any] | None,
) -> AsyncIterator[Reply]:
    from dicomnet.net.client import connect

    message = request.message
    identities: list[tuple[str, str, str]] = []
    sendable: list[Any] = []
    counters = SubOperations(len(instances))
    for source in instances:
        try:
            identities.append(instance_identity(source))
            sendable.append(source)
        except (OSError, Part10Error, AttributeError, ValueError) as exc:
            log.info("C-MOVE cannot read %s: %s", source, exc)
            counters.record(None, "")  # no UID to list for an unreadable file
    options = dict(connect_options or {})
    options.setdefault("timeouts", getattr(request.association, "timeouts", None))
    try:
        association = await connect(
            destination.host,
            destination.port,
            called_ae_title=destination.ae_title or message.move_destination,
            calling_ae_title=calling_ae_title,
            contexts=storage_contexts((c, ts) for c, _, ts in identities),
            max_operations_invoked=destination.max_operations_invoked,
            **options,
        )
    except (DicomNetError, ValueError) as exc:
        log.info("C-MOVE destination %s unreachable: %s", printable(message.move_destination), exc)
        counters.fail_rest(uid for _, uid, _ in identities)
        yield counters.final()
        return
    originator = request.association
    ae_title = getattr(originator, "calling_ae_title", "") or None

    async def store_one(source: Any) -> int:
        response = await association.store(
            source,
            priority=message.priority,
            move_originator_ae_title=ae_title,
            move_originator_message_id=message.message_id,
        )
        return int(response.status)

    try:
        window = association.max_outstanding or 16
        async for reply in _suboperations(request, sendable, store_one, window, counters):
            yield reply
    finally:
        try:
            await association.release()
        except DicomNetError:
            await association.abort()
