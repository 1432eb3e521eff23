"""Storage Commitment Push Model (PS3.4 J): asking for commitment and granting it.

Theory of operation
-------------------
The SCU sends N-ACTION (action type 1) naming a Transaction UID and the
instances, Referenced SOP Sequence; the SCP answers the N-ACTION at once and
later reports with N-EVENT-REPORT on the Storage Commitment Push Model SOP
Instance: event type 1 when every instance is committed, 2 when some failed
(Failed SOP Sequence, each with a Failure Reason).

The report comes either on the same association, if it is still open, or on
a new association the SCP opens to the SCU (the SCP then takes the SCP role
of the SOP class by role selection, since it is the one sending the event).
:class:`CommitmentWaiter` receives reports either way (attach it to the
client association with :meth:`CommitmentWaiter.attach_to`, or to a
listener with :meth:`CommitmentWaiter.serve_on`) and matches them to
transactions.

:class:`CommitmentProvider` grants commitment only for what the archive
really holds: an instance is committed when its file is found, its File Meta
names the same SOP class and instance, and it reads whole; otherwise it fails
with 0x0112 (no such object instance), 0x0119 (class/instance conflict) or
0x0110 (processing failure). The N-EVENT-REPORT leaves only after the
N-ACTION response has gone out (PS3.4 J.3.2), whatever the lookup costs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import mmap
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.dimse import CommandField
from dicomnet.core.pdu import RoleSelection
from dicomnet.core.status import (
    CLASS_INSTANCE_CONFLICT,
    INVALID_ARGUMENT_VALUE,
    INVALID_OBJECT_INSTANCE,
    NO_SUCH_ACTION,
    NO_SUCH_EVENT_TYPE,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    SUCCESS,
)
from dicomnet.core.text import printable
from dicomnet.core.uids import (
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from dicomnet.errors import DicomNetError
from dicomnet.net.association import IncomingRequest, Reply
from dicomnet.net.retrieve import MoveDestination

__all__ = [
    "CommitmentProvider",
    "CommitmentResult",
    "CommitmentWaiter",
    "commitment_contexts",
    "request_commitment",
]

log = logging.getLogger("dicomnet.services.commitment")

REQUEST_COMMITMENT = 1
ALL_COMMITTED = 1
SOME_FAILED = 2

Reference = tuple[str, str]
"""(SOP Class UID, SOP Instance UID)."""


@dataclass(frozen=True, slots=True)
class CommitmentResult:
    """What the SCP reported for one transaction."""

    transaction_uid: str
    committed: list[Reference] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)
    """(SOP Class UID, SOP Instance UID, Failure Reason)."""


def commitment_contexts(
    transfer_syntaxes: Sequence[str] = UNCOMPRESSED_TRANSFER_SYNTAXES,
) -> tuple[list[tuple[str, Sequence[str]]], list[RoleSelection]]:
    """Contexts and roles for an SCU that accepts the report on the same association.

    The SCU asks for both roles, so the SCP may send N-EVENT-REPORT back.
    """
    return (
        [(STORAGE_COMMITMENT_PUSH, tuple(transfer_syntaxes))],
        [RoleSelection(STORAGE_COMMITMENT_PUSH, True, True)],
    )


def _references(sequence: Any) -> list[Reference]:
    return [
        (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
        for item in sequence or []
    ]


def _report_dataset(
    transaction_uid: str, committed: Iterable[Reference], failed: Iterable[tuple[str, str, int]]
) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    report = Dataset()
    report.TransactionUID = transaction_uid
    done = []
    for sop_class, sop_instance in committed:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        done.append(item)
    if done:
        report.ReferencedSOPSequence = DicomSequence(done)
    failures = []
    for sop_class, sop_instance, reason in failed:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        item.FailureReason = reason
        failures.append(item)
    if failures:
        report.FailedSOPSequence = DicomSequence(failures)
    return report


# -- the SCU ------------------------------------------------------------------------------
class CommitmentWaiter:
    """Receives N-EVENT-REPORTs and resolves the transactions waiting for them."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[CommitmentResult]] = {}

    def expect(self, transaction_uid: str) -> asyncio.Future[CommitmentResult]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[transaction_uid] = future
        return future

    def attach_to(self, association: Any) -> None:
        """Take reports arriving on this association (the fo-dicom
        ``OnNEventReportRequest`` of a client connection)."""
        register = getattr(association, "on_n_event_report_request", None)
        if register is not None:
            register(self.handle)
        else:
            association.handlers[CommandField.N_EVENT_REPORT_RQ] = self.handle

    def serve_on(self, listener: Any) -> None:
        """Take reports the SCP sends on associations of its own to ``listener``."""
        # PS3.7 D.3.3.4: the SCP of storage commitment opens that association
        # and, as the sender of N-EVENT-REPORT, asks for the SCP role.
        listener.support(STORAGE_COMMITMENT_PUSH, scp_role=True)
        listener.handle(CommandField.N_EVENT_REPORT_RQ, self.handle)

    async def handle(self, request: IncomingRequest) -> Reply | int:
        """The N-EVENT-REPORT handler."""
        message = request.message
        if message.event_type_id not in (ALL_COMMITTED, SOME_FAILED):
            return NO_SUCH_EVENT_TYPE
        report = request.dataset
        if report is None or "TransactionUID" not in report:
            return Reply(INVALID_ARGUMENT_VALUE, None, {"error_comment": "no Transaction UID"})
        uid = str(report.TransactionUID)
        result = CommitmentResult(
            uid,
            _references(report.get("ReferencedSOPSequence")),
            [
                (
                    str(item.ReferencedSOPClassUID),
                    str(item.ReferencedSOPInstanceUID),
                    int(item.get("FailureReason", PROCESSING_FAILURE)),
                )
                for item in report.get("FailedSOPSequence") or []
            ],
        )
        future = self._waiting.pop(uid, None)
        if future is None:
            log.warning("storage commitment report for unknown transaction %s", printable(uid))
        elif not future.done():
            future.set_result(result)
        return SUCCESS


async def request_commitment(
    association: Any,
    instances: Iterable[Reference],
    waiter: CommitmentWaiter | None = None,
    *,
    transaction_uid: str | None = None,
    timeout: float = 60.0,
) -> CommitmentResult:
    """Ask for commitment of ``instances`` and wait for the SCP's report.

    Parameters
    ----------
    association : Association
        Where the N-ACTION goes; the peer accepted the Storage Commitment
        Push Model SOP class on it.
    instances : iterable of (SOP Class UID, SOP Instance UID)
        The Referenced SOP Sequence.
    waiter : CommitmentWaiter, optional
        Where the report is expected: attached to ``association`` (report
        on the same association) or serving on a listener the SCP can
        reach (a new association). None attaches a new waiter to
        ``association``.
    transaction_uid : str, optional
        The Transaction UID (0008,1195); a new UID by default.
    timeout : float
        Seconds to wait for the report once the N-ACTION succeeded;
        ``TimeoutError`` after that.

    Returns
    -------
    CommitmentResult
        The transaction UID, the committed instances, and the failed ones
        with their Failure Reason.
    """
    from pydicom.uid import generate_uid

    if waiter is None:
        waiter = CommitmentWaiter()
        waiter.attach_to(association)
    uid = transaction_uid or generate_uid()
    references = list(instances)
    action = _report_dataset(uid, references, ())
    future = waiter.expect(uid)
    try:
        result = await association.n_action(
            STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, REQUEST_COMMITMENT, action
        )
        if not result.ok:
            raise DicomNetError(f"storage commitment refused: status 0x{result.status:04X}")
        return await asyncio.wait_for(future, timeout)
    finally:
        waiter._waiting.pop(uid, None)


# -- the SCP ------------------------------------------------------------------------------
InstancePath = Callable[[str], Path | Awaitable[Path | None] | None]
"""``lookup(sop_instance_uid)``: the stored file, or None; a coroutine
function is awaited (an index query), a plain function is called."""


class CommitmentProvider:
    """Grants storage commitment for what the archive holds.

    Parameters
    ----------
    lookup : callable
        ``lookup(sop_instance_uid) -> Path | None``, plain or async.
    ae_title : str
        Our AE title, calling AE of a report sent on a new association.
    destinations : dict, optional
        Where to send reports on a new association, by the requester's AE
        title. When the requester is listed, reports go there; otherwise on
        the same association.
    """

    def __init__(
        self,
        lookup: InstancePath,
        *,
        ae_title: str = "DICOMNET",
        destinations: dict[str, MoveDestination] | None = None,
    ) -> None:
        self.lookup = lookup
        self.ae_title = ae_title
        self.destinations = dict(destinations or {})
        self.response_wait = 60.0
        """Seconds a report waits for its N-ACTION-RSP to be written."""
        self._reports: set[asyncio.Task[None]] = set()

    def attach(self, listener: Any) -> None:
        """Serve N-ACTION of the Storage Commitment Push Model on ``listener``."""
        listener.support(STORAGE_COMMITMENT_PUSH)
        listener.handle(CommandField.N_ACTION_RQ, self.handle)

    async def handle(self, request: IncomingRequest) -> Reply:
        """Answer the N-ACTION, then report in a task of its own."""
        message = request.message
        if message.requested_sop_instance_uid != STORAGE_COMMITMENT_PUSH_INSTANCE:
            return Reply(INVALID_OBJECT_INSTANCE)  # there is one well-known instance
        if message.action_type_id != REQUEST_COMMITMENT:
            return Reply(NO_SUCH_ACTION)
        action = request.dataset
        if action is None or "TransactionUID" not in action:
            return Reply(INVALID_ARGUMENT_VALUE, None, {"error_comment": "no Transaction UID"})
        if not action.get("ReferencedSOPSequence"):
            return Reply(
                INVALID_ARGUMENT_VALUE, None, {"error_comment": "empty Referenced SOP Sequence"}
            )
        references = _references(action.ReferencedSOPSequence)
        task = asyncio.get_running_loop().create_task(
            self._report(request, str(action.TransactionUID), references, asyncio.current_task())
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        return Reply(SUCCESS, None, {"action_type_id": REQUEST_COMMITMENT})

    async def verdicts(
        self, references: Sequence[Reference]
    ) -> tuple[list[Reference], list[tuple[str, str, int]]]:
        """Which instances are committed, and why the others are not."""
        committed: list[Reference] = []
        failed: list[tuple[str, str, int]] = []
        for sop_class, sop_instance in references:
            found = self.lookup(sop_instance)
            path = await found if inspect.isawaitable(found) else found
            reason = (
                NO_SUCH_SOP_INSTANCE
                if path is None
                else await asyncio.to_thread(_check_file, path, sop_class, sop_instance)
            )
            if reason is None:
                committed.append((sop_class, sop_instance))
            else:
                failed.append((sop_class, sop_instance, reason))
        return committed, failed

    async def _report(
        self,
        request: IncomingRequest,
        transaction_uid: str,
        references: list[Reference],
        answering: asyncio.Task[Any] | None,
    ) -> None:
        committed, failed = await self.verdicts(references)
        report = _report_dataset(transaction_uid, committed, failed)
        if answering is not None:
            # The handler's task ends once the N-ACTION-RSP is written: the
            # report must not overtake it on the same association.
            await asyncio.wait({answering}, timeout=self.response_wait)
        event = SOME_FAILED if failed else ALL_COMMITTED
        requester = getattr(request.association, "calling_ae_title", "")
        destination = self.destinations.get(requester)
        try:
            if destination is None:
                await request.association.n_event_report(
                    STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, event, report
                )
            else:
                await self._report_on_new_association(destination, requester, event, report)
        except DicomNetError as exc:
            log.warning("storage commitment report %s not delivered: %s", transaction_uid, exc)

    async def _report_on_new_association(
        self, destination: MoveDestination, requester: str, event: int, report: Any
    ) -> None:
        from dicomnet.net.client import connect

        async with connect(
            destination.host,
            destination.port,
            called_ae_title=destination.ae_title or requester,
            calling_ae_title=self.ae_title,
            contexts=[(STORAGE_COMMITMENT_PUSH, UNCOMPRESSED_TRANSFER_SYNTAXES)],
            roles=[RoleSelection(STORAGE_COMMITMENT_PUSH, False, True)],
        ) as association:
            result = await association.n_event_report(
                STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE, event, report
            )
            if not result.ok:
                log.warning("storage commitment report answered 0x%04X", result.status)


def _check_file(path: Path, sop_class: str, sop_instance: str) -> int | None:
    """None when the file holds that instance whole; else the Failure Reason."""
    from dicomnet.dataset.attributes import LITTLE_ENDIAN_SYNTAXES, is_complete
    from dicomnet.dataset.part10 import Part10Error, read_file_meta

    try:
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
            if (meta.sop_class_uid, meta.sop_instance_uid) != (sop_class, sop_instance):
                return CLASS_INSTANCE_CONFLICT
            if meta.transfer_syntax in LITTLE_ENDIAN_SYNTAXES:
                size = os.fstat(stream.fileno()).st_size
                if size <= meta.dataset_offset:
                    return PROCESSING_FAILURE
                with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    view = memoryview(mapped)[meta.dataset_offset :]
                    try:
                        whole = is_complete(view, meta.transfer_syntax == _IMPLICIT)
                    finally:
                        view.release()
            else:
                from pydicom import dcmread

                dcmread(path)  # big endian or deflated: pydicom's reading is the check
                whole = True
    except (OSError, Part10Error, ValueError, EOFError, AttributeError) as exc:
        log.warning("storage commitment: %s unreadable: %s", path, exc)
        return PROCESSING_FAILURE
    if not whole:
        log.warning("storage commitment: %s is truncated or corrupt", path)
        return PROCESSING_FAILURE
    return None


_IMPLICIT = "1.2.840.10008.1.2"
