"""The PS3.8 Upper Layer state table: states, events, actions and Table 9-10.

Theory of operation
-------------------
This module is data and small functions only; :class:`dicomnet.core.ul.Connection`
runs it. The states ``Sta1``-``Sta13`` (PS3.8 9.2.1) and events
``Evt1``-``Evt19`` (PS3.8 9.2.3) keep their standard numbers, and each action
(``AE_1`` ... ``AA_8``, PS3.8 Tables 9-6 to 9-9) is a function of the
connection and the event's payload that queues bytes, starts or stops ARTIM,
closes, and returns the user event, if any. :data:`TRANSITIONS` transcribes
Table 9-10 cell by cell.

An action reaches the connection only through :class:`ActionTarget`, the few
members it may touch; everything else about the connection (framing, the
message assembler, the event queue) is the connection's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from dicomnet.core.codec import encode_pdu
from dicomnet.core.pdu import (
    Abort,
    AbortSource,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ReleaseRP,
    ReleaseRQ,
)
from dicomnet.errors import ProtocolError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "AA_1", "AA_2", "AA_3", "AA_4", "AA_5", "AA_6", "AA_7", "AA_8", "ABORTABLE_STATES",
    "AE_1", "AE_2", "AE_3", "AE_4", "AE_5", "AE_6", "AE_7", "AE_8", "AR_1", "AR_2", "AR_3",
    "AR_4", "AR_5", "AR_6", "AR_7", "AR_8", "AR_9", "AR_10", "DT_1", "DT_2",
    "ESTABLISHED_STATES", "NEXT_STATE", "RELEASE_RESPONSE_STATES", "TRANSITIONS", "Aborted",
    "Action", "ActionTarget", "AssociateAccepted", "AssociateRejected", "AssociateRequested",
    "Event", "Evt", "MessageReceived", "PDataReceived", "ReleaseConfirmed", "ReleaseRequested",
    "Role", "State", "TransportClosed",
]


# -- states and events (PS3.8 9.2.1, 9.2.3) ---------------------------------------------


class Role(Enum):
    """Which end of the association a :class:`~dicomnet.core.ul.Connection` plays (PS3.8 7.1)."""

    REQUESTOR = "requestor"
    """Opens the transport connection and sends the A-ASSOCIATE-RQ."""
    ACCEPTOR = "acceptor"
    """Listens, receives the A-ASSOCIATE-RQ and accepts or rejects it."""


class State(IntEnum):
    """The states of the DICOM UL state machine (PS3.8 Tables 9-1 to 9-5)."""

    STA1 = 1  #: Idle: no association, no transport connection.
    STA2 = 2  #: Transport connection open, awaiting the A-ASSOCIATE-RQ PDU.
    STA3 = 3  #: Awaiting the local A-ASSOCIATE response primitive.
    STA4 = 4  #: Awaiting the transport connection to open.
    STA5 = 5  #: Awaiting the A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU.
    STA6 = 6  #: Association established, ready for data transfer.
    STA7 = 7  #: Awaiting the A-RELEASE-RP PDU.
    STA8 = 8  #: Awaiting the local A-RELEASE response primitive.
    STA9 = 9  #: Release collision, requestor side: awaiting the local A-RELEASE response.
    STA10 = 10  #: Release collision, acceptor side: awaiting the A-RELEASE-RP PDU.
    STA11 = 11  #: Release collision, requestor side: awaiting the A-RELEASE-RP PDU.
    STA12 = 12  #: Release collision, acceptor side: awaiting the local A-RELEASE response.
    STA13 = 13  #: Awaiting the transport connection to close; the association is gone.

    @property
    def description(self) -> str:
        """What the state waits for, after PS3.8 Tables 9-1 to 9-5."""
        return _STATE_DESCRIPTIONS[self]


_STATE_DESCRIPTIONS: Final[Mapping[State, str]] = MappingProxyType(
    {
        State.STA1: "idle",
        State.STA2: "transport connection open, awaiting A-ASSOCIATE-RQ PDU",
        State.STA3: "awaiting local A-ASSOCIATE response primitive",
        State.STA4: "awaiting transport connection opening to complete",
        State.STA5: "awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
        State.STA6: "association established and ready for data transfer",
        State.STA7: "awaiting A-RELEASE-RP PDU",
        State.STA8: "awaiting local A-RELEASE response primitive",
        State.STA9: "release collision requestor side, awaiting local A-RELEASE response",
        State.STA10: "release collision acceptor side, awaiting A-RELEASE-RP PDU",
        State.STA11: "release collision requestor side, awaiting A-RELEASE-RP PDU",
        State.STA12: "release collision acceptor side, awaiting local A-RELEASE response",
        State.STA13: "awaiting transport connection close, association no longer exists",
    }
)


class Evt(IntEnum):
    """The events of the DICOM UL state machine (PS3.8 Table 9-10, first column)."""

    EVT1 = 1  #: A-ASSOCIATE request primitive (local user).
    EVT2 = 2  #: Transport connection confirmation (local transport service).
    EVT3 = 3  #: A-ASSOCIATE-AC PDU received.
    EVT4 = 4  #: A-ASSOCIATE-RJ PDU received.
    EVT5 = 5  #: Transport connection indication (local transport service).
    EVT6 = 6  #: A-ASSOCIATE-RQ PDU received.
    EVT7 = 7  #: A-ASSOCIATE response primitive, accept (local user).
    EVT8 = 8  #: A-ASSOCIATE response primitive, reject (local user).
    EVT9 = 9  #: P-DATA request primitive (local user).
    EVT10 = 10  #: P-DATA-TF PDU received.
    EVT11 = 11  #: A-RELEASE request primitive (local user).
    EVT12 = 12  #: A-RELEASE-RQ PDU received.
    EVT13 = 13  #: A-RELEASE-RP PDU received.
    EVT14 = 14  #: A-RELEASE response primitive (local user).
    EVT15 = 15  #: A-ABORT request primitive (local user).
    EVT16 = 16  #: A-ABORT PDU received.
    EVT17 = 17  #: Transport connection closed indication (local transport service).
    EVT18 = 18  #: ARTIM timer expired.
    EVT19 = 19  #: Unrecognized or invalid PDU received.

    @property
    def description(self) -> str:
        """The event as PS3.8 Table 9-10 names it."""
        return _EVENT_DESCRIPTIONS[self]


_EVENT_DESCRIPTIONS: Final[Mapping[Evt, str]] = MappingProxyType(
    {
        Evt.EVT1: "A-ASSOCIATE request (local user)",
        Evt.EVT2: "transport connection confirmation (local transport service)",
        Evt.EVT3: "A-ASSOCIATE-AC PDU (received on transport connection)",
        Evt.EVT4: "A-ASSOCIATE-RJ PDU (received on transport connection)",
        Evt.EVT5: "transport connection indication (local transport service)",
        Evt.EVT6: "A-ASSOCIATE-RQ PDU (received on transport connection)",
        Evt.EVT7: "A-ASSOCIATE response primitive, accept (local user)",
        Evt.EVT8: "A-ASSOCIATE response primitive, reject (local user)",
        Evt.EVT9: "P-DATA request primitive (local user)",
        Evt.EVT10: "P-DATA-TF PDU (received on transport connection)",
        Evt.EVT11: "A-RELEASE request primitive (local user)",
        Evt.EVT12: "A-RELEASE-RQ PDU (received on transport connection)",
        Evt.EVT13: "A-RELEASE-RP PDU (received on transport connection)",
        Evt.EVT14: "A-RELEASE response primitive (local user)",
        Evt.EVT15: "A-ABORT request primitive (local user)",
        Evt.EVT16: "A-ABORT PDU (received on transport connection)",
        Evt.EVT17: "transport connection closed indication (local transport service)",
        Evt.EVT18: "ARTIM timer expired",
        Evt.EVT19: "unrecognized or invalid PDU received",
    }
)


# -- user events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociateRequested:
    """A-ASSOCIATE indication (AE-6): answer with ``accept`` or ``reject``."""

    rq: AssociateRQ


@dataclass(frozen=True, slots=True)
class AssociateAccepted:
    """A-ASSOCIATE confirmation, accept (AE-3): the association is established."""

    ac: AssociateAC


@dataclass(frozen=True, slots=True)
class AssociateRejected:
    """A-ASSOCIATE confirmation, reject (AE-4): the transport is being closed."""

    rj: AssociateRJ


@dataclass(frozen=True, slots=True)
class PDataReceived:
    """P-DATA indication (DT-2, AR-6): one P-DATA-TF body, not parsed.

    ``body`` is a view into the reader's buffer, valid until the next
    ``get_buffer`` or ``receive_data``; feed it to the codec's ``Assembler``
    before asking for more bytes.
    """

    body: memoryview


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication (AR-2, or AR-8 when ``collision``).

    Without a collision, answer with ``release_response``. In a release
    collision (PS3.8 7.2.2) the requestor answers at once (Sta9); the acceptor
    first waits for :class:`ReleaseConfirmed` (Sta10 to Sta12) and answers then.
    """

    collision: bool


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation (AR-3, or AR-10 in an acceptor's release collision)."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT or A-P-ABORT indication (AA-3 with ``by_peer``, AA-8 without).

    ``source`` and ``reason`` are the fields of the A-ABORT PDU received
    (``by_peer``) or sent by this side when it found the peer's input invalid
    (PS3.8 Table 9-26).
    """

    source: int
    reason: int
    by_peer: bool


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """One complete DIMSE message (PS3.7 6.3.1, PS3.8 Annex E), from a
    connection made with ``messages=True`` in place of :class:`PDataReceived`.

    ``command`` is the decoded command set; ``dataset`` is None (no dataset),
    a ``bytearray`` (collected in memory) or the sink the connection's
    ``dataset_sink`` returned for it, which has received every fragment.
    """

    context_id: int
    command: dict[int, Any]
    dataset: Any


@dataclass(frozen=True, slots=True)
class TransportClosed:
    """The transport connection is closed (Evt17); no event follows this one.

    Named apart from the exception :class:`dicomnet.errors.ConnectionClosed`,
    which a DIMSE caller sees when its association ended.
    """


Event: TypeAlias = (
    AssociateRequested
    | AssociateAccepted
    | AssociateRejected
    | PDataReceived
    | MessageReceived
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
    | TransportClosed
)
"""Every user-facing event :meth:`dicomnet.core.ul.Connection.next_event` returns."""

Action: TypeAlias = Callable[["ActionTarget", Any], "Event | None"]
"""A state machine action: takes the connection and the event's payload."""


class ActionTarget(Protocol):
    """What an action may touch of the :class:`~dicomnet.core.ul.Connection` running it."""

    artim_running: bool
    _send: list[ReadableBuffer]
    """Buffers queued for the transport, in order."""
    _rq_pdu: bytes
    """The encoded A-ASSOCIATE-RQ between AE-1 and AE-2."""

    def _start_artim(self) -> None:
        """Start (or restart) the ARTIM timer."""

    def _close(self) -> None:
        """Close the transport connection and stop ARTIM; nothing more is read."""

    def _open_input(self) -> None:
        """The transport connection is open: read what the peer sends."""

    def _peer_error(self, payload: object) -> ProtocolError:
        """The error behind an abort, kept as the connection's ``protocol_error``."""


# -- actions (PS3.8 Tables 9-6 to 9-9) ---------------------------------------------------
#
# The dispatcher looks an action up, calls it with the connection and the
# event's payload (a PDU value, a P-DATA-TF body, an encoded PDU to send or a
# ProtocolError), then sets the next state. An action queues bytes, starts or
# stops ARTIM, closes, and returns the user event or None.

_SERVICE_USER_ABORT: Final = encode_pdu(Abort(AbortSource.SERVICE_USER, 0))
_RELEASE_RQ: Final = encode_pdu(ReleaseRQ())
_RELEASE_RP: Final = encode_pdu(ReleaseRP())


def AE_1(conn: ActionTarget, rq_pdu: bytes) -> None:
    """Issue TRANSPORT CONNECT (PS3.8 AE-1); next Sta4.

    The transport opens the connection; the A-ASSOCIATE-RQ, already encoded,
    waits for Evt2.
    """
    conn._rq_pdu = rq_pdu


def AE_2(conn: ActionTarget, payload: None) -> None:
    """Send the A-ASSOCIATE-RQ PDU (PS3.8 AE-2); next Sta5."""
    conn._send.append(conn._rq_pdu)
    conn._rq_pdu = b""
    conn._open_input()


def AE_3(conn: ActionTarget, ac: AssociateAC) -> Event:
    """Issue the A-ASSOCIATE confirmation, accept (PS3.8 AE-3); next Sta6."""
    return AssociateAccepted(ac)


def AE_4(conn: ActionTarget, rj: AssociateRJ) -> Event:
    """Issue the A-ASSOCIATE confirmation, reject, and close (PS3.8 AE-4); next Sta1."""
    conn._close()
    return AssociateRejected(rj)


def AE_5(conn: ActionTarget, payload: None) -> None:
    """Accept the transport connection and start ARTIM (PS3.8 AE-5); next Sta2."""
    conn._open_input()
    conn._start_artim()


def AE_6(conn: ActionTarget, rq: AssociateRQ) -> Event:
    """Stop ARTIM and issue the A-ASSOCIATE indication (PS3.8 AE-6); next Sta3.

    PS3.8 lets the service provider reject an unacceptable request here; in
    dicomnet every request reaches the user, who answers with ``accept`` (Evt7)
    or ``reject`` (Evt8, AE-8).
    """
    conn.artim_running = False
    return AssociateRequested(rq)


def AE_7(conn: ActionTarget, ac_pdu: bytes) -> None:
    """Send the A-ASSOCIATE-AC PDU (PS3.8 AE-7); next Sta6."""
    conn._send.append(ac_pdu)


def AE_8(conn: ActionTarget, rj_pdu: bytes) -> None:
    """Send the A-ASSOCIATE-RJ PDU and start ARTIM (PS3.8 AE-8); next Sta13."""
    conn._send.append(rj_pdu)
    conn._start_artim()


def DT_1(conn: ActionTarget, buffers: Iterable[ReadableBuffer]) -> None:
    """Send P-DATA-TF PDUs (PS3.8 DT-1); next Sta6."""
    conn._send.extend(buffers)


def DT_2(conn: ActionTarget, body: memoryview) -> Event:
    """Issue the P-DATA indication (PS3.8 DT-2); next Sta6."""
    return PDataReceived(body)


def AR_1(conn: ActionTarget, payload: None) -> None:
    """Send the A-RELEASE-RQ PDU (PS3.8 AR-1); next Sta7."""
    conn._send.append(_RELEASE_RQ)


def AR_2(conn: ActionTarget, rq: ReleaseRQ) -> Event:
    """Issue the A-RELEASE indication (PS3.8 AR-2); next Sta8."""
    return ReleaseRequested(collision=False)


def AR_3(conn: ActionTarget, rp: ReleaseRP) -> Event:
    """Issue the A-RELEASE confirmation and close (PS3.8 AR-3); next Sta1."""
    conn._close()
    return ReleaseConfirmed()


def AR_4(conn: ActionTarget, payload: None) -> None:
    """Send the A-RELEASE-RP PDU and start ARTIM (PS3.8 AR-4); next Sta13."""
    conn._send.append(_RELEASE_RP)
    conn._start_artim()


def AR_5(conn: ActionTarget, payload: None) -> None:
    """Stop ARTIM (PS3.8 AR-5); next Sta1. The transport is already closed."""
    conn._close()


def AR_6(conn: ActionTarget, body: memoryview) -> Event:
    """Issue the P-DATA indication while awaiting A-RELEASE-RP (PS3.8 AR-6); next Sta7."""
    return PDataReceived(body)


def AR_7(conn: ActionTarget, buffers: Iterable[ReadableBuffer]) -> None:
    """Send P-DATA-TF PDUs before answering a release (PS3.8 AR-7); next Sta8."""
    conn._send.extend(buffers)


def AR_8(conn: ActionTarget, rq: ReleaseRQ) -> Event:
    """Issue the A-RELEASE indication, release collision (PS3.8 AR-8).

    Next state Sta9 for the association-requestor, Sta10 for the acceptor.
    """
    return ReleaseRequested(collision=True)


def AR_9(conn: ActionTarget, payload: None) -> None:
    """Send the A-RELEASE-RP PDU (PS3.8 AR-9); next Sta11."""
    conn._send.append(_RELEASE_RP)


def AR_10(conn: ActionTarget, rp: ReleaseRP) -> Event:
    """Issue the A-RELEASE confirmation (PS3.8 AR-10); next Sta12."""
    return ReleaseConfirmed()


def AA_1(conn: ActionTarget, payload: object) -> None:
    """Send an A-ABORT PDU (service-user source) and (re)start ARTIM (PS3.8 AA-1); next Sta13.

    ``payload`` is the encoded A-ABORT of the local user's request (Evt15);
    for bad peer input in Sta2 it is the PDU or error received, answered with
    source 0, reason 0 as Table 9-9 says.
    """
    if isinstance(payload, bytes):
        conn._send.append(payload)
    else:
        conn._peer_error(payload)
        conn._send.append(_SERVICE_USER_ABORT)
    conn._start_artim()


def AA_2(conn: ActionTarget, payload: object) -> None:
    """Stop ARTIM if running and close the transport (PS3.8 AA-2); next Sta1."""
    conn._close()


def AA_3(conn: ActionTarget, abort: Abort) -> Event:
    """Issue the A-ABORT (source 0) or A-P-ABORT indication and close (PS3.8 AA-3); next Sta1."""
    conn._close()
    return Aborted(abort.source, abort.reason, by_peer=True)


def AA_4(conn: ActionTarget, payload: None) -> None:
    """Issue the A-P-ABORT indication (PS3.8 AA-4); next Sta1.

    The transport closed under an association (Evt17); the indication is the
    :class:`TransportClosed` that ends every Evt17.
    """
    conn._close()


def AA_5(conn: ActionTarget, payload: None) -> None:
    """Stop ARTIM (PS3.8 AA-5); next Sta1. The transport is already closed."""
    conn._close()


def AA_6(conn: ActionTarget, payload: object) -> None:
    """Ignore the PDU (PS3.8 AA-6); next Sta13."""


def AA_7(conn: ActionTarget, payload: object) -> None:
    """Send an A-ABORT PDU (PS3.8 AA-7); next Sta13.

    The abort carries the error's source and reason: 2 and 2 for an
    A-ASSOCIATE-RQ while closing, the reader's or decoder's reason for Evt19.
    """
    error = conn._peer_error(payload)
    conn._send.append(encode_pdu(Abort(error.abort_source, error.abort_reason)))


def AA_8(conn: ActionTarget, payload: object) -> Event:
    """Send an A-ABORT PDU (service-provider source), issue the A-P-ABORT
    indication and start ARTIM (PS3.8 AA-8); next Sta13.

    ``payload`` is the :class:`~dicomnet.errors.ProtocolError` of Evt19, or
    the well-formed PDU that the state did not expect (reason 2).
    """
    error = conn._peer_error(payload)
    source, reason = error.abort_source, error.abort_reason
    conn._send.append(encode_pdu(Abort(source, reason)))
    conn._start_artim()
    return Aborted(source, reason, by_peer=False)


# -- the table (PS3.8 Table 9-10) ----------------------------------------------------------

NEXT_STATE: Final[Mapping[Action, State | None]] = MappingProxyType(
    {
        AE_1: State.STA4,
        AE_2: State.STA5,
        AE_3: State.STA6,
        AE_4: State.STA1,
        AE_5: State.STA2,
        AE_6: State.STA3,
        AE_7: State.STA6,
        AE_8: State.STA13,
        DT_1: State.STA6,
        DT_2: State.STA6,
        AR_1: State.STA7,
        AR_2: State.STA8,
        AR_3: State.STA1,
        AR_4: State.STA13,
        AR_5: State.STA1,
        AR_6: State.STA7,
        AR_7: State.STA8,
        AR_8: None,
        AR_9: State.STA11,
        AR_10: State.STA12,
        AA_1: State.STA13,
        AA_2: State.STA1,
        AA_3: State.STA1,
        AA_4: State.STA1,
        AA_5: State.STA1,
        AA_6: State.STA13,
        AA_7: State.STA13,
        AA_8: State.STA13,
    }
)
"""The next state of each action, from its definition in PS3.8 Tables 9-6 to 9-9.

``None`` for AR-8, whose next state depends on the role (Sta9 requestor, Sta10
acceptor).
"""

____ = None
# fmt: off
_TABLE_9_10: Final[Mapping[Evt, tuple[Action | None, ...]]] = MappingProxyType(
    {
        #         Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10  Sta11 Sta12 Sta13
        Evt.EVT1: (AE_1, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT2: (____, ____, ____, AE_2, ____, ____, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT3: (____, AA_1, AA_8, ____, AE_3, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6),
        Evt.EVT4: (____, AA_1, AA_8, ____, AE_4, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6),
        Evt.EVT5: (AE_5, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT6: (____, AE_6, AA_8, ____, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_7),
        Evt.EVT7: (____, ____, AE_7, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT8: (____, ____, AE_8, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT9: (____, ____, ____, ____, ____, DT_1, ____, AR_7, ____, ____, ____, ____, ____),
        Evt.EVT10: (____, AA_1, AA_8, ____, AA_8, DT_2, AR_6, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6),
        Evt.EVT11: (____, ____, ____, ____, ____, AR_1, ____, ____, ____, ____, ____, ____, ____),
        Evt.EVT12: (____, AA_1, AA_8, ____, AA_8, AR_2, AR_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6),
        Evt.EVT13: (____, AA_1, AA_8, ____, AA_8, AA_8, AR_3, AA_8, AA_8, AR_10, AR_3, AA_8, AA_6),
        Evt.EVT14: (____, ____, ____, ____, ____, ____, ____, AR_4, AR_9, ____, ____, AR_4, ____),
        Evt.EVT15: (____, ____, AA_1, AA_2, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, ____),
        Evt.EVT16: (____, AA_2, AA_3, ____, AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_2),
        Evt.EVT17: (____, AA_5, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AR_5),
        Evt.EVT18: (____, AA_2, ____, ____, ____, ____, ____, ____, ____, ____, ____, ____, AA_2),
        Evt.EVT19: (____, AA_1, AA_8, ____, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_7),
    }
)
# fmt: on
del ____

TRANSITIONS: Final[Mapping[tuple[State, Evt], tuple[Action, State | None]]] = MappingProxyType(
    {
        (State(column), event): (action, NEXT_STATE[action])
        for event, row in _TABLE_9_10.items()
        for column, action in enumerate(row, start=1)
        if action is not None
    }
)
"""PS3.8 Table 9-10: ``(state, event) -> (action, next state)``.

A missing key is an empty cell: the event cannot happen in that state (a local
primitive there raises :class:`~dicomnet.errors.LocalProtocolError`). The next
state of AR-8 is ``None``: see :data:`NEXT_STATE`.
"""

ABORTABLE_STATES: Final = frozenset(s for s, e in TRANSITIONS if e is Evt.EVT15)
"""States where :meth:`dicomnet.core.ul.Connection.abort` (Evt15) is allowed: Sta3 to Sta12."""

ESTABLISHED_STATES: Final = frozenset(State(n) for n in range(6, 13))
"""States in which the association exists: data transfer and release, Sta6 to Sta12."""

RELEASE_RESPONSE_STATES: Final = frozenset(s for s, e in TRANSITIONS if e is Evt.EVT14)
"""States where :meth:`dicomnet.core.ul.Connection.release_response` (Evt14) is allowed:
Sta8, Sta9, Sta12."""
