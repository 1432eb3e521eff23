"""The listener's audit trail: which events become which PS3.15 A.5 message.

Theory of operation
-------------------
:class:`AuditTrail` watches a listener through the hooks it already has and
hands each message's XML to ``submit`` (a
:class:`~dicomnet.services.audit_syslog.SyslogSender` behind the command):

=========================================  ==========================================
event                                       message (PS3.15 A.5.3)
=========================================  ==========================================
:meth:`AuditTrail.application_started`      110100 Application Activity, 110120 Start
and ``_stopped``                            / 110121 Stop
association accepted (listener observer)    110114 User Authentication, 110122 Login,
                                            outcome 0
association rejected                        the same, outcome 4, with the RJ reason
instances stored (store observer)           110104 DICOM Instances Transferred, action
                                            C: one message per association when it
                                            ends, one participant object per study
C-FIND (wrapped handler)                    110112 Query, with the identifier
C-MOVE, C-GET (wrapped handlers)            110104, action R, source us, destination
                                            the C-MOVE destination or the requestor
refused peer, TLS failure, hostile input    110113 Security Alert, 110126 Node
                                            Authentication or 110132 Use of
                                            Restricted Function
=========================================  ==========================================

Every participant that is a remote AE carries its AE title as user ID and
its IP address (behind a PROXY protocol proxy, the client's, not the
proxy's) as network access point. Nothing here blocks: building a message
is string work, ``submit`` only queues.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from dicomnet.core.dimse import CommandField
from dicomnet.core.text import printable
from dicomnet.net.association import IncomingRequest, as_reply
from dicomnet.services.audit import (
    EV,
    MINOR_FAILURE,
    SERIOUS_FAILURE,
    SUCCESS,
    Code,
    Participant,
    ParticipantObject,
    audit_message,
    node_object,
    patient_object,
    query_object,
    study_object,
)
from dicomnet.services.store_events import StoreEvent

__all__ = ["AuditTrail"]

log = logging.getLogger("dicomnet.services.audit_trail")

RETRIEVE_COMMANDS = (CommandField.C_MOVE_RQ, CommandField.C_GET_RQ)


@dataclass(slots=True)
class _Stored:
    """What one association stored, gathered until it ends."""

    peer_host: str
    calling: str
    called: str
    studies: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    patients: set[str] = field(default_factory=set)
    failed: int = 0


class AuditTrail:
    """Turns a listener's events into audit messages.

    Parameters
    ----------
    submit : callable
        Takes the XML of each message; must not block.
    ae_title : str
        Our AE title: the user ID of this application in every message.
    source_id : str
        AuditSourceID: which node reports (a host name, a site's node name).
    host : str
        Our network access point (a host name or address).
    """

    def __init__(
        self,
        submit: Callable[[str], Any],
        *,
        ae_title: str,
        source_id: str,
        host: str = "",
    ) -> None:
        self.submit = submit
        self.ae_title = ae_title
        self.source_id = source_id
        self.host = host
        self._stored: dict[int, _Stored] = {}

    # -- helpers ----------------------------------------------------------------------------
    def _us(self, role: Code | None = None, *, requestor: bool = False) -> Participant:
        return Participant(
            self.ae_title,
            requestor,
            role,
            network_access_point=self.host,
            alternative_user_id=str(os.getpid()),
        )

    def _emit(self, event_id: Code, **values: Any) -> None:
        try:
            self.submit(audit_message(event_id, source_id=self.source_id, **values))
        except Exception:  # an audit failure never stops the archive
            log.exception("audit message %s not built", event_id.meaning)

    @staticmethod
    def _peer(association: Any, role: Code | None = None) -> Participant:
        return Participant(
            printable(association.calling_ae_title.strip()) or "-",
            True,
            role,
            network_access_point=association.peer_host,
        )

    # -- the application ------------------------------------------------------------------
    def application_started(self) -> None:
        self._application(EV.APPLICATION_START)

    def application_stopped(self) -> None:
        for number in list(self._stored):
            self._flush_stored(number)
        self._application(EV.APPLICATION_STOP)

    def _application(self, kind: Code) -> None:
        self._emit(
            EV.APPLICATION_ACTIVITY,
            action="E",
            outcome=SUCCESS,
            event_types=[kind],
            participants=[self._us(EV.APPLICATION)],
        )

    # -- listener observer --------------------------------------------------------------------
    def association_accepted(self, association: Any) -> None:
        self._emit(
            EV.USER_AUTHENTICATION,
            action="E",
            outcome=SUCCESS,
            event_types=[EV.LOGIN],
            participants=[self._peer(association), self._us()],
            outcome_description=f"association {association.number} accepted",
        )

    def association_rejected(self, association: Any, rejection: Any) -> None:
        self._emit(
            EV.USER_AUTHENTICATION,
            action="E",
            outcome=MINOR_FAILURE,
            event_types=[EV.LOGIN],
            participants=[self._peer(association), self._us()],
            outcome_description=(
                f"association {association.number} rejected: result {int(rejection.result)}, "
                f"source {int(rejection.source)}, reason {int(rejection.reason)}"
            ),
        )

    def association_ended(self, association: Any, error: BaseException | None) -> None:
        self._flush_stored(association.number)

    def peer_refused(self, address: str, reason: str) -> None:
        """A connection refused before any association (e.g. an untrusted PROXY header)."""
        self.security_alert(address, reason, EV.NODE_AUTHENTICATION)

    def tls_failed(self, address: str, reason: str) -> None:
        """A TLS handshake that did not complete (PS3.15 B.1: node authentication)."""
        self.security_alert(address, f"TLS handshake failed: {reason}", EV.NODE_AUTHENTICATION)

    def input_refused(self, association: Any, error: BaseException) -> None:
        """A connection or association aborted for hostile or malformed input."""
        self.security_alert(
            association.peer_host,
            f"aborted for bad input: {printable(error)}",
            EV.USE_OF_RESTRICTED_FUNCTION,
            user_id=printable(association.calling_ae_title),
        )

    def security_alert(self, address: str, reason: str, kind: Code, *, user_id: str = "") -> None:
        """110113 Security Alert about the peer at ``address`` (A.5.3.11)."""
        self._emit(
            EV.SECURITY_ALERT,
            action="E",
            outcome=SERIOUS_FAILURE,
            event_types=[kind],
            participants=[
                self._us(EV.APPLICATION),
                Participant(user_id.strip() or address or "-", True, network_access_point=address),
            ],
            objects=[node_object(address or "-", reason)],
            outcome_description=reason,
        )

    # -- store observer ---------------------------------------------------------------------
    def __call__(self, event: StoreEvent) -> None:
        stored = self._stored.get(event.association)
        if stored is None:
            host = event.peer.rpartition(":")[0].strip("[]")
            calling, called = event.calling_ae_title.strip(), event.called_ae_title.strip()
            stored = _Stored(host, printable(calling), printable(called))  # XML holds no controls
            self._stored[event.association] = stored
        if not event.stored:
            stored.failed += 1
            return
        study = getattr(event, "study_instance_uid", "") or "-"
        stored.studies[study][event.sop_class_uid] += 1
        patient = getattr(event, "patient_id", "")
        if patient:
            stored.patients.add(patient)

    def _flush_stored(self, number: int) -> None:
        stored = self._stored.pop(number, None)
        if stored is None:
            return
        objects: list[ParticipantObject] = [
            study_object(uid, dict(classes)) for uid, classes in sorted(stored.studies.items())
        ]
        objects += [patient_object(patient) for patient in sorted(stored.patients)]
        total = sum(sum(classes.values()) for classes in stored.studies.values())
        self._emit(
            EV.INSTANCES_TRANSFERRED,
            action="C",
            outcome=MINOR_FAILURE if stored.failed else SUCCESS,
            participants=[
                Participant(
                    stored.calling or "-", True, EV.SOURCE, network_access_point=stored.peer_host
                ),
                self._us(EV.DESTINATION),
            ],
            objects=objects,
            outcome_description=(
                f"association {number}: {total} instances stored, {stored.failed} refused"
            ),
        )

    # -- query and retrieve ---------------------------------------------------------------------
    def wrap_handlers(self, listener: Any) -> None:
        """Audit the listener's C-FIND, C-MOVE and C-GET handlers, as registered now."""
        handlers = listener.handlers
        find = handlers.get(int(CommandField.C_FIND_RQ))
        if find is not None:
            handlers[int(CommandField.C_FIND_RQ)] = self._audited_find(find)
        for command in RETRIEVE_COMMANDS:
            handler = handlers.get(int(command))
            if handler is not None:
                handlers[int(command)] = self._audited_retrieve(handler, listener)

    def _audited_find(self, handler: Any) -> Any:
        async def find(request: IncomingRequest) -> AsyncIterator[Any]:
            self.query(request)
            async for reply in _replies(handler, request):
                yield reply

        return find

    def query(self, request: IncomingRequest) -> None:
        """110112 Query: who asked which information model what (A.5.3.12)."""
        association = request.association
        raw = request.raw_dataset
        self._emit(
            EV.QUERY,
            action="E",
            outcome=SUCCESS,
            participants=[self._peer(association, EV.SOURCE), self._us(EV.DESTINATION)],
            objects=[
                query_object(
                    request.abstract_syntax,
                    bytes(raw) if raw is not None else b"",
                    request.transfer_syntax,
                )
            ],
        )

    def _audited_retrieve(self, handler: Any, listener: Any) -> Any:
        async def retrieve(request: IncomingRequest) -> AsyncIterator[Any]:
            last: Any = None
            try:
                async for reply in _replies(handler, request):
                    last = as_reply(reply)
                    yield reply
            finally:
                self.retrieved(request, last, listener)

        return retrieve

    def retrieved(self, request: IncomingRequest, final: Any, listener: Any) -> None:
        """110104 DICOM Instances Transferred, action R: a C-MOVE or C-GET answered."""
        association = request.association
        message = request.message
        fields = final.fields if final is not None else {}
        completed = int(fields.get("number_of_completed_suboperations", 0))
        failed = int(fields.get("number_of_failed_suboperations", 0))
        warning = int(fields.get("number_of_warning_suboperations", 0))
        requestor = self._peer(association)
        destination_aet = str(getattr(message, "move_destination", "") or "").strip()
        if destination_aet:
            known = getattr(listener, "move_destinations", {}).get(destination_aet)
            destination = Participant(
                destination_aet,
                False,
                EV.DESTINATION,
                network_access_point=str(getattr(known, "host", "")),
            )
            participants = [self._us(EV.SOURCE), destination, requestor]
        else:  # C-GET: the requestor receives
            participants = [self._us(EV.SOURCE), self._peer(association, EV.DESTINATION)]
        try:
            identifier = request.dataset
        except Exception:
            identifier = None
        objects: list[ParticipantObject] = []
        if identifier is not None:
            for uid in _values(identifier.get("StudyInstanceUID", "")):
                objects.append(study_object(uid))
            for patient in _values(identifier.get("PatientID", "")):
                objects.append(patient_object(patient))
        status = final.status if final is not None else -1
        self._emit(
            EV.INSTANCES_TRANSFERRED,
            action="R",
            outcome=SUCCESS if status == 0 and not failed else MINOR_FAILURE,
            participants=participants,
            objects=objects,
            outcome_description=(
                f"{'C-MOVE' if destination_aet else 'C-GET'} status 0x{status & 0xFFFF:04X}: "
                f"{completed} completed, {warning} warning, {failed} failed"
            ),
            when=time.time(),
        )


async def _replies(handler: Any, request: IncomingRequest) -> AsyncIterator[Any]:
    """What a handler answers, as a stream, whether it returns or yields."""
    result = handler(request)
    if hasattr(result, "__aiter__"):
        try:
            async for reply in result:
                yield reply
        finally:
            closer = getattr(result, "aclose", None)
            if closer is not None:
                await closer()
    else:
        yield await result


def _values(value: Any) -> list[str]:
    """The values of a possibly multi-valued identifier attribute, without wildcards."""
    items = value.split("\\") if isinstance(value, str) else list(value or ())
    texts = [str(item).strip() for item in items]
    return [text for text in texts if text and not set(text) & set("*?")]
