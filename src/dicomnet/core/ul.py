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

P-DATA indications are raw P-DATA-TF bodies (:class:`PDataReceived`) unless
the connection is made with ``messages=True``: then it owns the codec's
:class:`~dicomnet.core.codec.Assembler`, built from its one frozen
:class:`ConnectionLimits`, and every complete DIMSE message is a
:class:`MessageReceived` event; PDVs that break PS3.8 Annex E or PS3.7 are
an invalid PDU (Evt19). A transport then only forwards events. In the states
where Table 9-10 makes a P-DATA-TF an indication (Sta6, Sta7) the assembler's
pump takes every whole P-DATA-TF of the receive buffer in one call, writing
file sinks' fragments itself; any other PDU stays in the reader and goes
through the table as before.

Each event is looked up in :data:`TRANSITIONS`, a transcription of PS3.8
Table 9-10 in :mod:`dicomnet.core.ul_table` (re-exported here with the
states, events, actions and user events), and the action found there
(``AE_1`` ... ``AA_8``, the functions of Tables 9-6 to 9-9) queues bytes,
sets :attr:`Connection.artim_running` and :attr:`Connection.should_close`,
and returns the user event, if any. The
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
from dicomnet.core.ul_table import (
    AA_1,
    AA_2,
    AA_3,
    AA_4,
    AA_5,
    AA_6,
    AA_7,
    AA_8,
    ABORTABLE_STATES,
    AE_1,
    AE_2,
    AE_3,
    AE_4,
    AE_5,
    AE_6,
    AE_7,
    AE_8,
    AR_1,
    AR_2,
    AR_3,
    AR_4,
    AR_5,
    AR_6,
    AR_7,
    AR_8,
    AR_9,
    AR_10,
    DT_1,
    DT_2,
    ESTABLISHED_STATES,
    NEXT_STATE,
    RELEASE_RESPONSE_STATES,
    TRANSITIONS,
    Aborted,
    Action,
    ActionTarget,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    Event,
    Evt,
    MessageReceived,
    PDataReceived,
    ReleaseConfirmed,
    ReleaseRequested,
    Role,
    State,
    TransportClosed,
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
    "ActionTarget",
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


# -- the table, as the connection reads it ----------------------------------------------

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


_PUMP_STATES: Final = frozenset({State.STA6, State.STA7})
"""Where Table 9-10 makes a P-DATA-TF an indication (DT-2, AR-6) and keeps the state."""


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
            if self._assembler is not None and self.state in _PUMP_STATES:
                event = self._pump()
                if event is not None:
                    return event
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

    def _pump(self) -> Event | None:
        """Every whole P-DATA-TF at the head of the reader through the assembler,
        up to the first completed message (its event; the others queued); Evt19
        if the PDVs are invalid. DT-2 and AR-6 leave the state as it is, so
        PDUs taken here skip nothing of the table."""
        assembler = self._assembler
        assert assembler is not None
        before = assembler.pumped
        try:
            messages = assembler.pump(self._reader)
        except ProtocolError as exc:
            self.pdus_received += assembler.pumped - before
            return self._peer(Evt.EVT19, exc)
        except Exception as exc:  # a sink that broke its promise never to raise
            self.pdus_received += assembler.pumped - before
            return self._peer(Evt.EVT19, ProtocolError(f"dataset sink failed: {exc}"))
        self.pdus_received += assembler.pumped - before
        if not messages:
            return None
        events = [MessageReceived(*message) for message in messages]
        self._events.extend(events[1:])
        return events[0]

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
