"""The sans-IO DICOM Upper Layer: the state machine of PS3.8 section 9.2.

Theory of operation
-------------------
One :class:`Connection` follows one association through the states
``Sta1``-``Sta13`` of PS3.8 9.2.1. It owns a :class:`~dicomnet.core.codec.PDUReader`
but no socket and no clock: every input is a method call and every output is
either a user event or bytes to send, in the manner of h11.

Inputs are the events ``Evt1``-``Evt19`` of PS3.8 9.2.3:

* from the transport: :meth:`Connection.connection_made` (Evt2 for the
  requestor, Evt5 for the acceptor), bytes through
  :meth:`~Connection.get_buffer` / :meth:`~Connection.buffer_updated` or
  :meth:`~Connection.receive_data`, :meth:`~Connection.connection_lost`
  (Evt17) and :meth:`~Connection.artim_expired` (Evt18);
* from the local user, one method per service primitive (Evt1, Evt7, Evt8,
  Evt9, Evt11, Evt14, Evt15);
* from the peer, one PDU at a time, pulled by :meth:`~Connection.next_event`:
  the reader frames it, :func:`~dicomnet.core.codec.decode_pdu` decodes it (except
  P-DATA-TF, whose body is handed up untouched) and its type names the event
  (A-ASSOCIATE-RQ Evt6, -AC Evt3, -RJ Evt4, P-DATA-TF Evt10, A-RELEASE-RQ
  Evt12, -RP Evt13, A-ABORT Evt16). Any :class:`~dicomnet.errors.ProtocolError`
  from the reader or the decoder is Evt19.

Each event is looked up in :data:`TRANSITIONS`, a transcription of PS3.8
Table 9-10, and the action found there (``AE_1`` ... ``AA_8``, the functions of
Tables 9-6 to 9-9) queues bytes, sets :attr:`Connection.artim_running` and
:attr:`Connection.should_close`, and returns the user event, if any. The
transport drains :meth:`~Connection.data_to_send` into one ``writelines``,
arms or disarms the ARTIM timer (PS3.8 9.1.5) as ``artim_running`` says and
closes the TCP connection once ``should_close`` is set.

A local primitive that the current state does not allow raises
:class:`~dicomnet.errors.LocalProtocolError` and changes nothing. Peer input
never raises: what the table does not expect becomes the table's abort action,
whose A-ABORT carries the source and reason of the error (an unexpected but
well-formed PDU is :class:`~dicomnet.errors.UnexpectedPDU`, reason 2).

Choices where PS3.8 leaves room
-------------------------------
* AE-6 (A-ASSOCIATE-RQ in Sta2) does not judge the request: it stops ARTIM and
  returns :class:`AssociateRequested`, always moving to Sta3. Acceptance is the
  user's decision (:meth:`~Connection.accept` is Evt7,
  :meth:`~Connection.reject` is Evt8, which PS3.8 lets the service provider
  make inside AE-6).
* AA-1 sends the service-user A-ABORT of Table 9-9 (source 0, reason 0) even
  when it answers bad peer input in Sta2; only the local user's
  :meth:`~Connection.abort` chooses other fields.
* The A-P-ABORT indication of AA-4 (transport closed while associated) is
  delivered as :class:`TransportClosed`, the same event every Evt17 ends with.
* AR-8's next state depends on the role (Sta9 requestor, Sta10 acceptor); its
  cell in :data:`TRANSITIONS` holds ``None`` for the next state.
* Once the reader has failed, the association is over or the transport is
  gone, incoming bytes are discarded: a stream that lost its framing can only
  be closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from dicomnet.core.codec import Assembler, PDUReader, decode_pdu, encode_pdu
from dicomnet.core.pdu import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    DEFAULT_MAX_PDU_LENGTH,
    Abort,
    AbortSource,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    ReleaseRP,
    ReleaseRQ,
)
from dicomnet.errors import LocalProtocolError, ProtocolError, UnexpectedPDU

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from dicomnet.core._pdu_py import Assembler as _Assembler
    from dicomnet.core._pdu_py import PDUReader as _Reader

__all__ = [
    "AA_1",
    "AA_2",
    "AA_3",
    "AA_4",
    "AA_5",
    "AA_6",
    "AA_7",
    "AA_8",
    "ABORTABLE_STATES",
    "AE_1",
    "AE_2",
    "AE_3",
    "AE_4",
    "AE_5",
    "AE_6",
    "AE_7",
    "AE_8",
    "AR_1",
    "AR_2",
    "AR_3",
    "AR_4",
    "AR_5",
    "AR_6",
    "AR_7",
    "AR_8",
    "AR_9",
    "AR_10",
    "DEFAULT_MAX_COMMAND_LENGTH",
    "DT_1",
    "DT_2",
    "ESTABLISHED_STATES",
    "NEXT_STATE",
    "RELEASE_RESPONSE_STATES",
    "TRANSITIONS",
    "Aborted",
    "Action",
    "AssociateAccepted",
    "AssociateRejected",
    "AssociateRequested",
    "Connection",
    "ConnectionLimits",
    "DatasetSinkFactory",
    "Event",
    "Evt",
    "MessageReceived",
    "PDataReceived",
    "ReleaseConfirmed",
    "ReleaseRequested",
    "Role",
    "State",
    "TransportClosed",
]


# -- states and events (PS3.8 9.2.1, 9.2.3) ---------------------------------------------


class Role(Enum):
    """Which end of the association a :class:`Connection` plays (PS3.8 7.1)."""

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
"""Every user-facing event :meth:`Connection.next_event` returns."""

Action: TypeAlias = Callable[["Connection", Any], "Event | None"]
"""A state machine action: takes the connection and the event's payload."""


# -- actions (PS3.8 Tables 9-6 to 9-9) ---------------------------------------------------
#
# The dispatcher looks an action up, calls it with the connection and the
# event's payload (a PDU value, a P-DATA-TF body, an encoded PDU to send or a
# ProtocolError), then sets the next state. An action queues bytes, starts or
# stops ARTIM, closes, and returns the user event or None.

_SERVICE_USER_ABORT: Final = encode_pdu(Abort(AbortSource.SERVICE_USER, 0))
_RELEASE_RQ: Final = encode_pdu(ReleaseRQ())
_RELEASE_RP: Final = encode_pdu(ReleaseRP())


def AE_1(conn: Connection, rq_pdu: bytes) -> None:
    """Issue TRANSPORT CONNECT (PS3.8 AE-1); next Sta4.

    The transport opens the connection; the A-ASSOCIATE-RQ, already encoded,
    waits for Evt2.
    """
    conn._rq_pdu = rq_pdu


def AE_2(conn: Connection, payload: None) -> None:
    """Send the A-ASSOCIATE-RQ PDU (PS3.8 AE-2); next Sta5."""
    conn._send.append(conn._rq_pdu)
    conn._rq_pdu = b""
    conn._open_input()


def AE_3(conn: Connection, ac: AssociateAC) -> Event:
    """Issue the A-ASSOCIATE confirmation, accept (PS3.8 AE-3); next Sta6."""
    return AssociateAccepted(ac)


def AE_4(conn: Connection, rj: AssociateRJ) -> Event:
    """Issue the A-ASSOCIATE confirmation, reject, and close (PS3.8 AE-4); next Sta1."""
    conn._close()
    return AssociateRejected(rj)


def AE_5(conn: Connection, payload: None) -> None:
    """Accept the transport connection and start ARTIM (PS3.8 AE-5); next Sta2."""
    conn._open_input()
    conn._start_artim()


def AE_6(conn: Connection, rq: AssociateRQ) -> Event:
    """Stop ARTIM and issue the A-ASSOCIATE indication (PS3.8 AE-6); next Sta3.

    PS3.8 lets the service provider reject an unacceptable request here; in
    dicomnet every request reaches the user, who answers with ``accept`` (Evt7)
    or ``reject`` (Evt8, AE-8).
    """
    conn.artim_running = False
    return AssociateRequested(rq)


def AE_7(conn: Connection, ac_pdu: bytes) -> None:
    """Send the A-ASSOCIATE-AC PDU (PS3.8 AE-7); next Sta6."""
    conn._send.append(ac_pdu)


def AE_8(conn: Connection, rj_pdu: bytes) -> None:
    """Send the A-ASSOCIATE-RJ PDU and start ARTIM (PS3.8 AE-8); next Sta13."""
    conn._send.append(rj_pdu)
    conn._start_artim()


def DT_1(conn: Connection, buffers: Iterable[ReadableBuffer]) -> None:
    """Send P-DATA-TF PDUs (PS3.8 DT-1); next Sta6."""
    conn._send.extend(buffers)


def DT_2(conn: Connection, body: memoryview) -> Event:
    """Issue the P-DATA indication (PS3.8 DT-2); next Sta6."""
    return PDataReceived(body)


def AR_1(conn: Connection, payload: None) -> None:
    """Send the A-RELEASE-RQ PDU (PS3.8 AR-1); next Sta7."""
    conn._send.append(_RELEASE_RQ)


def AR_2(conn: Connection, rq: ReleaseRQ) -> Event:
    """Issue the A-RELEASE indication (PS3.8 AR-2); next Sta8."""
    return ReleaseRequested(collision=False)


def AR_3(conn: Connection, rp: ReleaseRP) -> Event:
    """Issue the A-RELEASE confirmation and close (PS3.8 AR-3); next Sta1."""
    conn._close()
    return ReleaseConfirmed()


def AR_4(conn: Connection, payload: None) -> None:
    """Send the A-RELEASE-RP PDU and start ARTIM (PS3.8 AR-4); next Sta13."""
    conn._send.append(_RELEASE_RP)
    conn._start_artim()


def AR_5(conn: Connection, payload: None) -> None:
    """Stop ARTIM (PS3.8 AR-5); next Sta1. The transport is already closed."""
    conn._close()


def AR_6(conn: Connection, body: memoryview) -> Event:
    """Issue the P-DATA indication while awaiting A-RELEASE-RP (PS3.8 AR-6); next Sta7."""
    return PDataReceived(body)


def AR_7(conn: Connection, buffers: Iterable[ReadableBuffer]) -> None:
    """Send P-DATA-TF PDUs before answering a release (PS3.8 AR-7); next Sta8."""
    conn._send.extend(buffers)


def AR_8(conn: Connection, rq: ReleaseRQ) -> Event:
    """Issue the A-RELEASE indication, release collision (PS3.8 AR-8).

    Next state Sta9 for the association-requestor, Sta10 for the acceptor.
    """
    return ReleaseRequested(collision=True)


def AR_9(conn: Connection, payload: None) -> None:
    """Send the A-RELEASE-RP PDU (PS3.8 AR-9); next Sta11."""
    conn._send.append(_RELEASE_RP)


def AR_10(conn: Connection, rp: ReleaseRP) -> Event:
    """Issue the A-RELEASE confirmation (PS3.8 AR-10); next Sta12."""
    return ReleaseConfirmed()


def AA_1(conn: Connection, payload: object) -> None:
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


def AA_2(conn: Connection, payload: object) -> None:
    """Stop ARTIM if running and close the transport (PS3.8 AA-2); next Sta1."""
    conn._close()


def AA_3(conn: Connection, abort: Abort) -> Event:
    """Issue the A-ABORT (source 0) or A-P-ABORT indication and close (PS3.8 AA-3); next Sta1."""
    conn._close()
    return Aborted(abort.source, abort.reason, by_peer=True)


def AA_4(conn: Connection, payload: None) -> None:
    """Issue the A-P-ABORT indication (PS3.8 AA-4); next Sta1.

    The transport closed under an association (Evt17); the indication is the
    :class:`TransportClosed` that ends every Evt17.
    """
    conn._close()


def AA_5(conn: Connection, payload: None) -> None:
    """Stop ARTIM (PS3.8 AA-5); next Sta1. The transport is already closed."""
    conn._close()


def AA_6(conn: Connection, payload: object) -> None:
    """Ignore the PDU (PS3.8 AA-6); next Sta13."""


def AA_7(conn: Connection, payload: object) -> None:
    """Send an A-ABORT PDU (PS3.8 AA-7); next Sta13.

    The abort carries the error's source and reason: 2 and 2 for an
    A-ASSOCIATE-RQ while closing, the reader's or decoder's reason for Evt19.
    """
    error = conn._peer_error(payload)
    conn._send.append(encode_pdu(Abort(error.abort_source, error.abort_reason)))


def AA_8(conn: Connection, payload: object) -> Event:
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

_Row: TypeAlias = Mapping[State, tuple[Action, State]]


def _rows_for(role: Role) -> Mapping[Evt, _Row]:
    """The table by event then state, with AR-8's next state resolved for ``role``."""
    collision = State.STA9 if role is Role.REQUESTOR else State.STA10
    rows: dict[Evt, dict[State, tuple[Action, State]]] = {event: {} for event in Evt}
    for (state, event), (action, next_state) in TRANSITIONS.items():
        rows[event][state] = (action, collision if next_state is None else next_state)
    return MappingProxyType({event: MappingProxyType(row) for event, row in rows.items()})


_ROWS: Final[Mapping[Role, Mapping[Evt, _Row]]] = MappingProxyType(
    {role: _rows_for(role) for role in Role}
)

ABORTABLE_STATES: Final = frozenset(s for s, e in TRANSITIONS if e is Evt.EVT15)
"""States where :meth:`Connection.abort` (Evt15) is allowed: Sta3 to Sta12."""

ESTABLISHED_STATES: Final = frozenset(State(n) for n in range(6, 13))
"""States in which the association exists: data transfer and release, Sta6 to Sta12."""

RELEASE_RESPONSE_STATES: Final = frozenset(s for s, e in TRANSITIONS if e is Evt.EVT14)
"""States where :meth:`Connection.release_response` (Evt14) is allowed: Sta8, Sta9, Sta12."""

_PDU_EVENTS: Final[Mapping[int, Evt]] = MappingProxyType(
    {
        0x01: Evt.EVT6,
        0x02: Evt.EVT3,
        0x03: Evt.EVT4,
        0x05: Evt.EVT12,
        0x06: Evt.EVT13,
        0x07: Evt.EVT16,
    }
)
"""The event of each association PDU type (P-DATA-TF, 04H, is Evt10)."""

_PDU_NAMES: Final[Mapping[type, str]] = MappingProxyType(
    {
        AssociateRQ: "A-ASSOCIATE-RQ",
        AssociateAC: "A-ASSOCIATE-AC",
        AssociateRJ: "A-ASSOCIATE-RJ",
        memoryview: "P-DATA-TF",
        ReleaseRQ: "A-RELEASE-RQ",
        ReleaseRP: "A-RELEASE-RP",
        Abort: "A-ABORT",
    }
)

_PRIMITIVES: Final[Mapping[Evt, str]] = MappingProxyType(
    {
        Evt.EVT1: "request_association() (A-ASSOCIATE request)",
        Evt.EVT2: "connection_made() (transport connection confirmation)",
        Evt.EVT5: "connection_made() (transport connection indication)",
        Evt.EVT7: "accept() (A-ASSOCIATE response, accept)",
        Evt.EVT8: "reject() (A-ASSOCIATE response, reject)",
        Evt.EVT9: "send_pdata() (P-DATA request)",
        Evt.EVT11: "release() (A-RELEASE request)",
        Evt.EVT14: "release_response() (A-RELEASE response)",
        Evt.EVT15: "abort() (A-ABORT request)",
        Evt.EVT19: "invalid_pdu() (invalid PDU received)",
    }
)

_SCRATCH_SIZE: Final = 16 << 10
"""Size of the buffer that swallows bytes nobody will read."""


# -- the connection -----------------------------------------------------------------------

DEFAULT_MAX_COMMAND_LENGTH: Final = 65536
"""Largest command set accepted by default: real ones are a few hundred bytes."""

DatasetSinkFactory: TypeAlias = Callable[[int, dict[int, Any]], Any]
"""``factory(context_id, command)``: a sink (an object with ``write(fragment)``)
for the dataset the command set announces, or None to collect it in memory."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one :class:`Connection` accepts from its peer, fixed for its life.

    Every limit is checked where the bytes arrive (the reader, the
    assembler), so a peer that breaks one is aborted (Evt19, AA-8) before
    the data reaches memory or disk.

    Attributes
    ----------
    max_pdu_length : int
        Our Maximum Length Received (PS3.8 D.1): the largest P-DATA-TF body
        accepted; 0 means unlimited up to the codec's cap.
    max_associate_length : int
        Largest A-ASSOCIATE-RQ/AC body accepted.
    max_command_length : int
        Largest command set (PS3.7 6.3.1) accepted, in bytes.
    max_dataset_length : int
        Largest dataset written to a sink, in bytes (0 = no limit).
    max_buffered_dataset_length : int
        Largest dataset collected in memory, in bytes (0 = no limit).
    """

    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH
    max_dataset_length: int = 0
    max_buffered_dataset_length: int = 0



class Connection:
    """One association's DICOM UL state machine, without I/O (PS3.8 9.2).

    Parameters
    ----------
    role : Role
        ``Role.REQUESTOR`` (the SCU side that connects) or ``Role.ACCEPTOR``.
    limits : ConnectionLimits, optional
        What the peer may send; the defaults of :class:`ConnectionLimits`.
    messages : bool
        Assemble P-DATA into DIMSE messages: each P-DATA indication's PDVs go
        to the connection's :class:`~dicomnet.core.codec.Assembler`, and every
        complete message is a :class:`MessageReceived` event. A PDV stream
        that breaks PS3.8 Annex E or PS3.7 is an invalid PDU (Evt19, AA-8).
        Without it (the default), each P-DATA-TF body is a
        :class:`PDataReceived` event, as PS3.8 describes the P-DATA
        indication.
    dataset_sink : callable, optional
        With ``messages``: the :data:`DatasetSinkFactory` asked for a sink
        when a command set announcing a dataset completes.

    Attributes
    ----------
    role : Role
        As given.
    state : State
        The current state, ``State.STA1`` at first.
    artim_running : bool
        The ARTIM timer should be running (PS3.8 9.1.5); the transport arms it
        while this is true and disarms it otherwise.
    artim_starts : int
        How many times ARTIM was (re)started; AA-1 restarts a running timer,
        which a transport can tell from this count changing.
    should_close : bool
        The transport connection should be closed (set by AE-4, AR-3, AR-5,
        AA-2 to AA-5); once set it stays set.
    protocol_error : ProtocolError or None
        The peer's last protocol violation (an unexpected PDU is an
        :class:`~dicomnet.errors.UnexpectedPDU`), kept for logs.
    pdus_received : int
        Complete PDUs taken from the peer so far: a transport's proof of
        activity while a long dataset arrives without a complete message.
    """

    __slots__ = (
        "_assembler",
        "_deaf",
        "_events",
        "_evt9",
        "_evt10",
        "_lost",
        "_reader",
        "_reading",
        "_rows",
        "_rq_pdu",
        "_scratch",
        "_send",
        "artim_running",
        "artim_starts",
        "limits",
        "pdus_received",
        "protocol_error",
        "role",
        "should_close",
        "state",
    )

    def __init__(
        self,
        role: Role,
        limits: ConnectionLimits | None = None,
        *,
        messages: bool = False,
        dataset_sink: DatasetSinkFactory | None = None,
    ) -> None:
        limits = limits or ConnectionLimits()
        self.role = role
        self.limits = limits
        self.pdus_received = 0
        self.state = State.STA1
        self.artim_running = False
        self.artim_starts = 0
        self.should_close = False
        self.protocol_error: ProtocolError | None = None
        self._reader: _Reader = PDUReader(limits.max_pdu_length, limits.max_associate_length)
        self._assembler: _Assembler | None = None
        if messages:
            assembler = Assembler(limits.max_command_length)
            assembler.max_dataset_length = limits.max_dataset_length
            assembler.max_buffered_dataset_length = limits.max_buffered_dataset_length
            assembler.on_command = dataset_sink
            self._assembler = assembler
        self._rows = _ROWS[role]
        self._evt9 = self._rows[Evt.EVT9]
        self._evt10 = self._rows[Evt.EVT10]
        self._send: list[ReadableBuffer] = []
        self._events: list[Event] = []
        self._deaf = True
        """Incoming bytes are discarded: not connected yet, closed, or the reader failed."""
        self._reading = False
        """next_event pulls PDUs from the reader (only in Sta2, Sta3 and Sta5 to Sta13)."""
        self._lost = False
        self._rq_pdu = b""
        self._scratch: memoryview | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self.state.name}>"

    @property
    def max_pdu_length(self) -> int:
        """Largest P-DATA-TF body accepted from the peer (our Maximum Length Received)."""
        return self._reader.max_pdu_length

    def use_contexts(self, context_ids: Iterable[int]) -> None:
        """The presentation contexts the peer's P-DATA may name from now on: the
        negotiated ones (PS3.8 9.3.5); a PDV on any other is an invalid PDU.

        Only with ``messages``; before it is called every context is allowed.
        """
        if self._assembler is not None:
            self._assembler.context_ids = frozenset(context_ids)

    # -- transport inputs ------------------------------------------------------------------

    def connection_made(self) -> None:
        """The transport connection is open: Evt2 (requestor) or Evt5 (acceptor).

        Ignored when the association already ended before the transport
        connected (an abort in Sta4): ``should_close`` is set and the transport
        closes at once.

        Raises
        ------
        LocalProtocolError
            If the state has no such event (a requestor that has not called
            :meth:`request_association`, a second call).
        """
        if self.should_close:
            return
        self._local(Evt.EVT2 if self.role is Role.REQUESTOR else Evt.EVT5, None)

    def get_buffer(self, sizehint: int) -> memoryview:
        """A writable view for the transport to receive into (``asyncio.BufferedProtocol``).

        Never raises on peer input: a header that breaks the reader's limits
        is kept for :meth:`next_event`, which turns it into Evt19, and the
        bytes that follow are discarded.
        """
        if not self._deaf:
            try:
                return self._reader.get_buffer(sizehint)
            except ProtocolError:
                self._deaf = True  # the poisoned reader raises again in next_event: Evt19
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = memoryview(bytearray(_SCRATCH_SIZE))
        return scratch

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the last :meth:`get_buffer` view."""
        if not self._deaf:
            self._reader.buffer_updated(nbytes)

    def receive_data(self, data: ReadableBuffer) -> None:
        """Copy received bytes in (for tests and transports without ``get_buffer``)."""
        if not self._deaf:
            self._reader.feed(data)

    def connection_lost(self) -> None:
        """The transport connection closed (Evt17).

        Call it once all received bytes went through :meth:`next_event`:
        complete PDUs still unread are dropped. :meth:`next_event` then
        returns :class:`TransportClosed` once (after any event still queued)
        and ``None`` for ever. In Sta1 (the UL had closed already) there is no
        transition, only the event. Later calls do nothing.
        """
        if self._lost:
            return
        cell = self._rows[Evt.EVT17].get(self.state)
        if cell is not None:
            self._dispatch(cell, None)
        self._lost = True
        self._deaf = True
        self._reading = False
        self._events.append(TransportClosed())

    def artim_expired(self) -> None:
        """The ARTIM timer fired (Evt18): AA-2 in Sta2 and Sta13.

        A timer that fires after ``artim_running`` went false (a stale timer
        that lost a race with its cancellation) is ignored.
        """
        if not self.artim_running:
            return
        cell = self._rows[Evt.EVT18].get(self.state)
        if cell is not None:
            self._dispatch(cell, None)

    # -- local user primitives ----------------------------------------------------------

    def request_association(self, rq: AssociateRQ) -> None:
        """A-ASSOCIATE request (Evt1, AE-1): the RQ goes out when the transport connects.

        Raises
        ------
        LocalProtocolError
            Not a requestor, or not in Sta1.
        ValueError
            If ``rq`` cannot be encoded (nothing changes).
        """
        if self.role is not Role.REQUESTOR:
            raise LocalProtocolError("only an association-requestor may request an association")
        cell = self._cell(Evt.EVT1)
        self._dispatch(cell, encode_pdu(rq))

    def accept(self, ac: AssociateAC) -> None:
        """A-ASSOCIATE response, accept (Evt7, AE-7): send the A-ASSOCIATE-AC.

        Raises
        ------
        LocalProtocolError
            Not in Sta3.
        ValueError
            If ``ac`` cannot be encoded (nothing changes).
        """
        cell = self._cell(Evt.EVT7)
        self._dispatch(cell, encode_pdu(ac))

    def reject(self, rj: AssociateRJ) -> None:
        """A-ASSOCIATE response, reject (Evt8, AE-8): send the A-ASSOCIATE-RJ, start ARTIM.

        Raises
        ------
        LocalProtocolError
            Not in Sta3.
        ValueError
            If ``rj`` cannot be encoded (nothing changes).
        """
        cell = self._cell(Evt.EVT8)
        self._dispatch(cell, encode_pdu(rj))

    def send_pdata(self, buffers: Iterable[ReadableBuffer]) -> None:
        """P-DATA request (Evt9, DT-1 or AR-7): queue encoded P-DATA-TF PDUs as given.

        ``buffers`` are complete P-DATA-TF PDUs, typically from
        :func:`~dicomnet.core.codec.fragment_message`; they are queued without a
        copy.

        Raises
        ------
        LocalProtocolError
            Not in Sta6 or Sta8.
        """
        try:
            action, next_state = self._evt9[self.state]
        except KeyError:
            raise self._refusal(Evt.EVT9) from None
        action(self, buffers)
        self.state = next_state

    def release(self) -> None:
        """A-RELEASE request (Evt11, AR-1): send the A-RELEASE-RQ.

        Raises
        ------
        LocalProtocolError
            Not in Sta6.
        """
        self._local(Evt.EVT11, None)

    def release_response(self) -> None:
        """A-RELEASE response (Evt14, AR-4 or AR-9): send the A-RELEASE-RP.

        Raises
        ------
        LocalProtocolError
            Not in Sta8, Sta9 or Sta12.
        """
        self._local(Evt.EVT14, None)

    def abort(self, reason: int = 0, source: int = AbortSource.SERVICE_USER) -> None:
        """A-ABORT request (Evt15): AA-1 sends an A-ABORT and starts ARTIM; AA-2 in Sta4.

        Parameters
        ----------
        reason : int
            The A-ABORT reason field (PS3.8 Table 9-26); not significant, and
            best left 0, with source 0.
        source : int
            0 (service user, PS3.8 AA-1) unless a layer above found the peer
            breaking the protocol; :meth:`invalid_pdu` is the better tool then.

        Raises
        ------
        LocalProtocolError
            Not in Sta3 to Sta12.
        ValueError
            If a field is outside 0-255 (nothing changes).
        """
        cell = self._cell(Evt.EVT15)
        self._dispatch(cell, encode_pdu(Abort(source, reason)))

    def invalid_pdu(self, error: ProtocolError) -> None:
        """Report a received PDU that a layer above found invalid (Evt19).

        P-DATA-TF bodies are not parsed here; when the codec's ``Assembler``
        finds one breaking PS3.8 Annex E or PS3.7, that PDU was invalid and the
        table applies: AA-8 in Sta3 to Sta12 (A-ABORT with the error's source
        and reason, an :class:`Aborted` event from :meth:`next_event`, ARTIM),
        AA-7 in Sta13, AA-1 in Sta2.

        Raises
        ------
        LocalProtocolError
            In Sta1 or Sta4, where no PDU can have been received.
        """
        self._local(Evt.EVT19, error)

    # -- outputs ----------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next user event, or ``None`` when more bytes are needed.

        Events queued by other inputs come first, then received PDUs, one per
        call; a PDU whose action issues nothing (AA-6, AA-7, AA-1 in Sta2) is
        consumed silently. Never raises on peer input. After
        :meth:`connection_lost`, returns :class:`TransportClosed` once, then
        ``None``.
        """
        while True:
            if self._events:
                return self._events.pop(0)
            if not self._reading:
                return None
            try:
                item = self._reader.next_pdu()
            except ProtocolError as exc:
                self._deaf = True  # the reader is poisoned: no further framing
                self._reading = False
                event = self._peer(Evt.EVT19, exc)
            else:
                if item is None:
                    return None
                pdu_type, body = item
                self.pdus_received += 1
                if pdu_type == 0x04:
                    action, next_state = self._evt10[self.state]
                    event = action(self, body)
                    self.state = next_state
                    if event is not None and self._assembler is not None:
                        event = self._assemble(body)
                else:
                    event = self._association_pdu(pdu_type, body)
            if event is not None:
                return event

    def data_to_send(self) -> list[ReadableBuffer]:
        """The queued buffers, for one ``writelines`` call; the queue is emptied.

        Control PDUs are ``bytes``; P-DATA buffers are the ones given to
        :meth:`send_pdata`.
        """
        data = self._send
        self._send = []
        return data

    # -- machinery ------------------------------------------------------------------------

    def _assemble(self, body: memoryview) -> Event | None:
        """Feed a P-DATA indication's PDVs to the assembler: the first complete
        message as the event, the others queued; Evt19 if the PDVs are invalid."""
        assert self._assembler is not None
        try:
            messages = self._assembler.feed(body)
        except ProtocolError as exc:
            return self._peer(Evt.EVT19, exc)
        except Exception as exc:  # a sink that broke its promise never to raise
            return self._peer(Evt.EVT19, ProtocolError(f"dataset sink failed: {exc}"))
        if not messages:
            return None
        events = [MessageReceived(*message) for message in messages]
        self._events.extend(events[1:])
        return events[0]

    def _association_pdu(self, pdu_type: int, body: memoryview) -> Event | None:
        """Decode an association PDU and fire its event, or Evt19 if it is malformed."""
        try:
            pdu = decode_pdu(pdu_type, body)
        except ProtocolError as exc:
            return self._peer(Evt.EVT19, exc)
        return self._peer(_PDU_EVENTS[pdu_type], pdu)

    def _peer(self, event: Evt, payload: object) -> Event | None:
        """Run the cell of a peer event; every state that reads has one (Sta2, Sta3, Sta5-13)."""
        action, next_state = self._rows[event][self.state]
        result = action(self, payload)
        self.state = next_state
        return result

    def _local(self, event: Evt, payload: object) -> None:
        """Run the cell of a local event, or raise if the table has none."""
        self._dispatch(self._cell(event), payload)

    def _cell(self, event: Evt) -> tuple[Action, State]:
        try:
            return self._rows[event][self.state]
        except KeyError:
            raise self._refusal(event) from None

    def _dispatch(self, cell: tuple[Action, State], payload: object) -> None:
        """Run a cell outside next_event: its user event, if any, is queued."""
        action, next_state = cell
        result = action(self, payload)
        self.state = next_state
        if result is not None:
            self._events.append(result)

    def _refusal(self, event: Evt) -> LocalProtocolError:
        state = self.state
        return LocalProtocolError(
            f"{_PRIMITIVES.get(event, event.description)} is not allowed in {state.name} "
            f"({state.description}); PS3.8 Table 9-10 has no {event.name} there"
        )

    def _start_artim(self) -> None:
        self.artim_running = True
        self.artim_starts += 1

    def _close(self) -> None:
        """Close the transport connection and stop ARTIM; nothing more is read."""
        self.artim_running = False
        self.should_close = True
        self._deaf = True
        self._reading = False

    def _open_input(self) -> None:
        """The transport connection is open: read what the peer sends."""
        self._deaf = False
        self._reading = True

    def _peer_error(self, payload: object) -> ProtocolError:
        """The error behind an abort: the Evt19 error, or an UnexpectedPDU for a valid PDU."""
        if isinstance(payload, ProtocolError):
            error = payload
        else:
            name = _PDU_NAMES.get(type(payload), type(payload).__name__)
            state = self.state
            error = UnexpectedPDU(f"{name} received in {state.name} ({state.description})")
        self.protocol_error = error
        return error
