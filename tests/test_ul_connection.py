"""Two dicomnet.core.ul Connections talking in memory: no sockets, no sleeps.

A requestor and an acceptor are joined by :class:`Link`, which carries what
one side queued into the other and collects the events that come out. The
scenarios follow PS3.8 7 (the services) and 9.2 (the state machine):
association, P-DATA, release, release collisions, aborts, rejection, bytes
arriving one at a time, malformed and unexpected PDUs, and ARTIM expiry.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomnet.core import ul
from dicomnet.core.codec import encode_pdu
from dicomnet.core.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PresentationContextAC,
    PresentationContextRQ,
)
from dicomnet.core.ul import Role, State
from dicomnet.errors import LocalProtocolError, PDVError, UnexpectedPDU

RQ = AssociateRQ(
    "ACCEPTOR",
    "REQUESTOR",
    (PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
)
AC = AssociateAC("ACCEPTOR", "REQUESTOR", (PresentationContextAC(1, 0, "1.2.840.10008.1.2"),))
RJ = AssociateRJ(1, 1, 7)
RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")
RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")


def abort_bytes(source: int, reason: int) -> bytes:
    return bytes.fromhex("07 00 00000004 00 00") + bytes([source, reason])


def pdata(payload: bytes, context_id: int = 1, control: int = 0x03) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5)."""
    pdv = (len(payload) + 2).to_bytes(4, "big") + bytes([context_id, control]) + payload
    return b"\x04\x00" + len(pdv).to_bytes(4, "big") + pdv


class Link:
    """A requestor and an acceptor joined in memory."""

    def __init__(self, *, chunk: int = 0, via_buffer: bool = False) -> None:
        self.requestor = ul.Connection(Role.REQUESTOR)
        self.acceptor = ul.Connection(Role.ACCEPTOR)
        self.chunk = chunk
        self.via_buffer = via_buffer

    def deliver(self, src: ul.Connection, dst: ul.Connection) -> list[ul.Event]:
        """Carry what ``src`` queued into ``dst``; the events ``dst`` returns, in order.

        ``chunk`` bytes at a time (0: each buffer whole), copied through
        ``get_buffer``/``buffer_updated`` when ``via_buffer``; events are
        pulled after every chunk, as a transport does.
        """
        return self.feed(dst, b"".join(bytes(b) for b in src.data_to_send()))

    def feed(self, dst: ul.Connection, data: bytes) -> list[ul.Event]:
        """Carry ``data`` into ``dst`` as :meth:`deliver` does."""
        step = self.chunk or max(len(data), 1)
        events: list[ul.Event] = []
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            if self.via_buffer:
                while piece:
                    view = dst.get_buffer(-1)
                    n = min(len(view), len(piece))
                    view[:n] = piece[:n]
                    dst.buffer_updated(n)
                    piece = piece[n:]
            else:
                dst.receive_data(piece)
            for _ in range(len(data) + 1):  # bounded: at most one event per byte
                event = dst.next_event()
                if event is None:
                    break
                if isinstance(event, ul.PDataReceived):  # the view dies with the next read
                    event = ul.PDataReceived(memoryview(bytes(event.body)))
                events.append(event)
        return events

    def to_acceptor(self) -> list[ul.Event]:
        return self.deliver(self.requestor, self.acceptor)

    def to_requestor(self) -> list[ul.Event]:
        return self.deliver(self.acceptor, self.requestor)

    def associate(self) -> None:
        self.requestor.request_association(RQ)
        self.acceptor.connection_made()
        assert self.acceptor.artim_running
        self.requestor.connection_made()
        assert self.to_acceptor() == [ul.AssociateRequested(RQ)]
        assert self.acceptor.state is State.STA3
        assert not self.acceptor.artim_running
        self.acceptor.accept(AC)
        assert self.to_requestor() == [ul.AssociateAccepted(AC)]
        assert self.requestor.state is self.acceptor.state is State.STA6

    def close_transport(self) -> tuple[list[ul.Event], list[ul.Event]]:
        """The TCP connection goes away under both sides (Evt17)."""
        self.requestor.connection_lost()
        self.acceptor.connection_lost()
        return drain(self.requestor), drain(self.acceptor)


def drain(conn: ul.Connection) -> list[ul.Event]:
    events = []
    for _ in range(100):
        event = conn.next_event()
        if event is None:
            return events
        events.append(event)
    raise AssertionError("next_event did not run dry")


LINKS = {
    "whole": lambda: Link(),
    "byte-by-byte": lambda: Link(chunk=1),
    "byte-by-byte-get_buffer": lambda: Link(chunk=1, via_buffer=True),
    "7-byte-chunks-get_buffer": lambda: Link(chunk=7, via_buffer=True),
}


@pytest.fixture(params=sorted(LINKS))
def link(request: pytest.FixtureRequest) -> Link:
    factory: Callable[[], Link] = LINKS[request.param]
    return factory()


# -- the normal life of an association ---------------------------------------------------


def test_associate_exchange_and_release(link: Link) -> None:
    link.associate()
    command, dataset = pdata(b"\x01\x02" * 20, control=0x03), pdata(b"\xff" * 101 + b"\x00")
    link.requestor.send_pdata([command, dataset])
    assert link.to_acceptor() == [
        ul.PDataReceived(memoryview(command[6:])),
        ul.PDataReceived(memoryview(dataset[6:])),
    ]
    reply = pdata(b"\x00\x00", control=0x03)
    link.acceptor.send_pdata([reply])
    assert link.to_requestor() == [ul.PDataReceived(memoryview(reply[6:]))]

    link.requestor.release()
    assert link.requestor.state is State.STA7
    assert link.to_acceptor() == [ul.ReleaseRequested(collision=False)]
    assert link.acceptor.state is State.STA8
    link.acceptor.send_pdata([reply])  # AR-7: data may still go out before the answer
    link.acceptor.release_response()
    assert link.to_requestor() == [ul.PDataReceived(memoryview(reply[6:])), ul.ReleaseConfirmed()]
    assert link.requestor.state is State.STA1 and link.requestor.should_close
    assert link.acceptor.state is State.STA13 and link.acceptor.artim_running
    assert not link.acceptor.should_close  # the requestor closes (PS3.8 9.1.6)

    assert link.close_transport() == ([ul.TransportClosed()], [ul.TransportClosed()])
    assert link.acceptor.state is State.STA1 and not link.acceptor.artim_running
    assert link.requestor.next_event() is None and link.acceptor.next_event() is None


def test_pdata_body_is_the_readers_view_and_sent_buffers_are_the_callers() -> None:
    link = Link()
    link.associate()
    payload = memoryview(bytearray(pdata(b"\x07" * 64)))
    link.requestor.send_pdata([payload])
    queued = link.requestor.data_to_send()
    assert queued[0] is payload  # queued without a copy
    assert link.requestor.data_to_send() == []  # drained
    link.acceptor.receive_data(payload)
    event = link.acceptor.next_event()
    assert isinstance(event, ul.PDataReceived)
    assert type(event.body) is memoryview and event.body == payload[6:]


def test_release_during_pdata_from_the_peer_in_sta7() -> None:
    link = Link()
    link.associate()
    link.requestor.release()
    data = pdata(b"\xaa\xbb")
    link.acceptor.send_pdata([data])  # crossed on the wire with the A-RELEASE-RQ
    assert link.to_requestor() == [ul.PDataReceived(memoryview(data[6:]))]  # AR-6
    assert link.requestor.state is State.STA7


def test_release_collision_requestor_rq_arrives_first(link: Link) -> None:
    link.associate()
    link.requestor.release()
    link.acceptor.release()
    assert link.to_acceptor() == [ul.ReleaseRequested(collision=True)]
    assert link.acceptor.state is State.STA10
    assert link.to_requestor() == [ul.ReleaseRequested(collision=True)]
    assert link.requestor.state is State.STA9
    with pytest.raises(LocalProtocolError):
        link.acceptor.release_response()  # the acceptor answers only after its confirmation
    link.requestor.release_response()  # AR-9
    assert link.requestor.state is State.STA11
    assert link.to_acceptor() == [ul.ReleaseConfirmed()]  # AR-10
    assert link.acceptor.state is State.STA12
    link.acceptor.release_response()  # AR-4
    assert link.acceptor.state is State.STA13 and link.acceptor.artim_running
    assert link.to_requestor() == [ul.ReleaseConfirmed()]  # AR-3
    assert link.requestor.state is State.STA1 and link.requestor.should_close
    assert link.close_transport() == ([ul.TransportClosed()], [ul.TransportClosed()])


def test_release_collision_acceptor_rq_arrives_first(link: Link) -> None:
    link.associate()
    link.acceptor.release()
    link.requestor.release()
    assert link.to_requestor() == [ul.ReleaseRequested(collision=True)]
    assert link.requestor.state is State.STA9
    link.requestor.release_response()
    assert link.requestor.state is State.STA11
    # the acceptor now reads the requestor's A-RELEASE-RQ, then its A-RELEASE-RP
    assert link.to_acceptor() == [ul.ReleaseRequested(collision=True), ul.ReleaseConfirmed()]
    assert link.acceptor.state is State.STA12
    link.acceptor.release_response()
    assert link.to_requestor() == [ul.ReleaseConfirmed()]
    assert link.requestor.state is State.STA1 and link.requestor.should_close
    assert link.acceptor.state is State.STA13


def test_release_by_the_acceptor() -> None:
    link = Link()
    link.associate()
    link.acceptor.release()
    assert link.to_requestor() == [ul.ReleaseRequested(collision=False)]
    link.requestor.release_response()
    assert link.requestor.state is State.STA13 and link.requestor.artim_running
    assert link.to_acceptor() == [ul.ReleaseConfirmed()]
    assert link.acceptor.state is State.STA1 and link.acceptor.should_close


@pytest.mark.parametrize("aborter", ["requestor", "acceptor"])
def test_abort_either_way(link: Link, aborter: str) -> None:
    link.associate()
    sender = getattr(link, aborter)
    receiver = link.acceptor if sender is link.requestor else link.requestor
    sender.abort()
    assert bytes(sender.data_to_send()[0]) == abort_bytes(0, 0)
    assert sender.state is State.STA13 and sender.artim_running  # AA-1
    receiver.receive_data(abort_bytes(0, 0))
    assert drain(receiver) == [ul.Aborted(0, 0, by_peer=True)]  # AA-3
    assert receiver.state is State.STA1 and receiver.should_close
    sender.artim_expired()  # the peer did not close in time: AA-2
    assert sender.state is State.STA1 and sender.should_close and not sender.artim_running


def test_abort_during_association_setup() -> None:
    link = Link()
    link.requestor.request_association(RQ)
    link.acceptor.connection_made()
    link.requestor.connection_made()
    assert link.to_acceptor() == [ul.AssociateRequested(RQ)]
    link.requestor.abort()  # Sta5, AA-1
    assert link.to_acceptor() == [ul.Aborted(0, 0, by_peer=True)]  # Sta3, AA-3
    assert link.acceptor.should_close


def test_abort_before_the_transport_connects() -> None:
    conn = ul.Connection(Role.REQUESTOR)
    conn.request_association(RQ)
    conn.abort()  # Sta4, AA-2: nothing to send, close the half-open connection
    assert conn.state is State.STA1 and conn.should_close and conn.data_to_send() == []
    conn.connection_made()  # the connect completing late is not an error
    assert conn.state is State.STA1 and conn.data_to_send() == []


def test_abort_with_provider_source() -> None:
    link = Link()
    link.associate()
    link.acceptor.abort(reason=5, source=2)
    assert link.to_requestor() == [ul.Aborted(2, 5, by_peer=True)]


def test_reject(link: Link) -> None:
    link.requestor.request_association(RQ)
    link.acceptor.connection_made()
    link.requestor.connection_made()
    link.to_acceptor()
    link.acceptor.reject(RJ)
    assert link.acceptor.state is State.STA13 and link.acceptor.artim_running  # AE-8
    assert link.to_requestor() == [ul.AssociateRejected(RJ)]  # AE-4
    assert link.requestor.state is State.STA1 and link.requestor.should_close
    assert link.close_transport() == ([ul.TransportClosed()], [ul.TransportClosed()])
    assert link.acceptor.state is State.STA1  # AR-5


def test_unencodable_answer_changes_nothing() -> None:
    link = Link()
    link.requestor.request_association(RQ)
    link.acceptor.connection_made()
    link.requestor.connection_made()
    link.to_acceptor()
    with pytest.raises(ValueError):
        link.acceptor.accept(AssociateAC("A" * 17, "B", ()))
    assert link.acceptor.state is State.STA3 and link.acceptor.data_to_send() == []


# -- malformed and unexpected input in Sta6 -----------------------------------------------

MALFORMED = {
    "unknown PDU type": (bytes.fromhex("08 00 00000000"), 1),
    "unknown PDU type FF": (bytes.fromhex("FF 00 00000002 0000"), 1),
    "A-RELEASE-RQ of length 2": (bytes.fromhex("05 00 00000002 0000"), 6),
    "A-ABORT of length 6": (bytes.fromhex("07 00 00000006 000000000000"), 6),
    "A-ASSOCIATE-RJ of length 0": (bytes.fromhex("03 00 00000000"), 6),
    "P-DATA-TF above our maximum": (bytes.fromhex("04 00 FFFFFFFF") + bytes(10), 6),
    "A-ASSOCIATE-RQ shorter than its fixed part": (bytes.fromhex("01 00 0000000A") + bytes(10), 6),
    "a second A-ASSOCIATE-RQ": (encode_pdu(RQ), 2),
    "an A-ASSOCIATE-AC": (encode_pdu(AC), 2),
    "an A-ASSOCIATE-RJ": (encode_pdu(RJ), 2),
    "an A-RELEASE-RP": (RELEASE_RP, 2),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_bad_pdu_in_sta6_aborts_with_provider_source(link: Link, name: str) -> None:
    data, reason = MALFORMED[name]
    link.associate()
    link.requestor.send_pdata([pdata(b"\x00\x01")])
    link.to_acceptor()
    # the bad bytes, then more bytes that must not produce anything else
    events = link.feed(link.acceptor, data + pdata(b"\x00\x02"))
    assert events[0] == ul.Aborted(2, reason, by_peer=False)  # AA-8
    assert events[1:] == []  # Sta13 ignores the P-DATA (AA-6) or can no longer frame it
    assert [bytes(b) for b in link.acceptor.data_to_send()] == [abort_bytes(2, reason)]
    assert link.acceptor.state is State.STA13
    assert link.acceptor.artim_running and not link.acceptor.should_close
    assert link.acceptor.protocol_error is not None
    assert link.acceptor.protocol_error.abort_reason == reason
    # the peer reads our abort and goes away
    assert link.deliver(link.acceptor, link.requestor) == []
    link.acceptor.artim_expired()
    assert link.acceptor.state is State.STA1 and link.acceptor.should_close


def test_unexpected_pdu_is_reported_as_unexpected() -> None:
    link = Link()
    link.associate()
    link.acceptor.receive_data(encode_pdu(RQ))
    assert link.acceptor.next_event() == ul.Aborted(2, 2, by_peer=False)
    assert isinstance(link.acceptor.protocol_error, UnexpectedPDU)
    assert "A-ASSOCIATE-RQ" in str(link.acceptor.protocol_error)


def test_sta13_after_a_malformed_body_keeps_reading_by_the_table() -> None:
    """A malformed body leaves the framing intact: later PDUs meet Sta13's cells."""
    link = Link()
    link.associate()
    conn = link.acceptor
    conn.receive_data(bytes.fromhex("01 00 0000000A") + bytes(10))  # AA-8, reason 6
    conn.receive_data(RELEASE_RQ)  # AA-6: ignored
    conn.receive_data(encode_pdu(RQ))  # AA-7: an A-ABORT, reason 2
    conn.receive_data(bytes.fromhex("01 00 0000000A") + bytes(10))  # Evt19, AA-7, reason 6
    conn.receive_data(abort_bytes(0, 0))  # AA-2: close
    conn.receive_data(RELEASE_RQ)  # after the close: not read
    assert drain(conn) == [ul.Aborted(2, 6, by_peer=False)]
    assert [bytes(b) for b in conn.data_to_send()] == [
        abort_bytes(2, 6),
        abort_bytes(2, 2),
        abort_bytes(2, 6),
    ]
    assert conn.state is State.STA1 and conn.should_close and not conn.artim_running


def test_bad_header_found_by_get_buffer_becomes_evt19() -> None:
    link = Link()
    link.associate()
    conn = link.acceptor
    view = conn.get_buffer(-1)
    view[:6] = bytes.fromhex("04 00 7FFFFFFF")  # P-DATA-TF far above our maximum
    conn.buffer_updated(6)
    for _ in range(3):  # the reader's error is found here, yet nothing raises
        view = conn.get_buffer(-1)
        view[:4] = b"junk"
        conn.buffer_updated(4)
    assert drain(conn) == [ul.Aborted(2, 6, by_peer=False)]
    assert conn.state is State.STA13


def test_invalid_pdata_reported_by_the_layer_above() -> None:
    link = Link()
    link.associate()
    link.requestor.send_pdata([pdata(b"\x00", control=0x00)])  # odd dataset fragment
    (event,) = link.to_acceptor()
    assert isinstance(event, ul.PDataReceived)
    link.acceptor.invalid_pdu(PDVError("odd fragment length"))
    assert drain(link.acceptor) == [ul.Aborted(2, 6, by_peer=False)]
    assert [bytes(b) for b in link.acceptor.data_to_send()] == [abort_bytes(2, 6)]
    assert link.acceptor.state is State.STA13
    with pytest.raises(LocalProtocolError):
        ul.Connection(Role.ACCEPTOR).invalid_pdu(PDVError("no PDU was received"))


def test_garbage_right_after_accept_in_sta2() -> None:
    """Non-DICOM bytes in Sta2: Evt19 there is AA-1 (service-user source, Table 9-10)."""
    conn = ul.Connection(Role.ACCEPTOR)
    conn.connection_made()
    starts = conn.artim_starts
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert drain(conn) == []  # no indication: the user never saw this association
    assert [bytes(b) for b in conn.data_to_send()] == [abort_bytes(0, 0)]
    assert conn.state is State.STA13
    assert conn.artim_running and conn.artim_starts == starts + 1  # ARTIM restarted
    assert conn.protocol_error is not None and conn.protocol_error.abort_reason == 1
    conn.artim_expired()
    assert conn.state is State.STA1 and conn.should_close


# -- ARTIM ------------------------------------------------------------------------------------


def test_artim_expiry_in_sta2() -> None:
    conn = ul.Connection(Role.ACCEPTOR)
    conn.connection_made()
    assert conn.state is State.STA2 and conn.artim_running
    conn.artim_expired()  # AA-2: the peer never sent its A-ASSOCIATE-RQ
    assert conn.state is State.STA1 and conn.should_close and not conn.artim_running
    assert conn.data_to_send() == [] and conn.next_event() is None
    conn.receive_data(encode_pdu(RQ))  # too late: not read
    assert conn.next_event() is None
    conn.connection_lost()
    assert drain(conn) == [ul.TransportClosed()]


def test_artim_expiry_in_sta13() -> None:
    link = Link()
    link.associate()
    link.acceptor.abort()
    assert link.acceptor.state is State.STA13 and link.acceptor.artim_running
    link.acceptor.artim_expired()
    assert link.acceptor.state is State.STA1 and link.acceptor.should_close
    assert not link.acceptor.artim_running and link.acceptor.next_event() is None


def test_stale_artim_expiry_is_ignored() -> None:
    link = Link()
    link.associate()
    link.acceptor.artim_expired()  # ARTIM is not running in Sta6
    assert link.acceptor.state is State.STA6 and not link.acceptor.should_close


# -- the transport going away ---------------------------------------------------------------


def test_connection_lost_in_sta6() -> None:
    link = Link()
    link.associate()
    link.requestor.connection_lost()  # AA-4
    assert link.requestor.state is State.STA1 and link.requestor.should_close
    assert link.requestor.next_event() == ul.TransportClosed()
    assert link.requestor.next_event() is None
    link.requestor.connection_lost()  # a second report changes nothing
    assert link.requestor.next_event() is None
    with pytest.raises(LocalProtocolError):
        link.requestor.send_pdata([pdata(b"\x00\x00")])
    assert link.requestor.data_to_send() == []


def test_connection_lost_in_sta2() -> None:
    conn = ul.Connection(Role.ACCEPTOR)
    conn.connection_made()
    conn.connection_lost()  # AA-5: a probe that connects and leaves
    assert conn.state is State.STA1 and not conn.artim_running
    assert drain(conn) == [ul.TransportClosed()]


def test_events_queued_before_the_loss_come_first() -> None:
    link = Link()
    link.associate()
    link.acceptor.invalid_pdu(PDVError("bad"))
    link.acceptor.connection_lost()
    assert drain(link.acceptor) == [ul.Aborted(2, 6, by_peer=False), ul.TransportClosed()]


# -- local primitives in the wrong state ----------------------------------------------------


@pytest.mark.parametrize(
    "primitive",
    [
        lambda c: c.release(),
        lambda c: c.release_response(),
        lambda c: c.send_pdata([b"\x04"]),
        lambda c: c.accept(AC),
        lambda c: c.reject(RJ),
        lambda c: c.request_association(RQ),
        lambda c: c.connection_made(),
    ],
    ids=["release", "release_response", "send_pdata", "accept", "reject", "request", "made"],
)
def test_local_primitive_refused_in_sta5(primitive: Callable[[ul.Connection], None]) -> None:
    conn = ul.Connection(Role.REQUESTOR)
    conn.request_association(RQ)
    conn.connection_made()
    conn.data_to_send()
    with pytest.raises(LocalProtocolError, match="STA5"):
        primitive(conn)
    assert conn.state is State.STA5 and conn.data_to_send() == []


def test_abort_refused_in_sta13_and_before_connection() -> None:
    conn = ul.Connection(Role.ACCEPTOR)
    with pytest.raises(LocalProtocolError):
        conn.abort()
    conn.connection_made()
    with pytest.raises(LocalProtocolError):
        conn.abort()  # Sta2: no abort primitive before the indication
    assert conn.data_to_send() == []


def test_requestor_cannot_be_connected_before_requesting() -> None:
    conn = ul.Connection(Role.REQUESTOR)
    with pytest.raises(LocalProtocolError):
        conn.connection_made()
    assert conn.state is State.STA1


def test_max_pdu_length_is_the_readers() -> None:
    conn = ul.Connection(Role.ACCEPTOR, ul.ConnectionLimits(max_pdu_length=16))
    assert conn.max_pdu_length == 16
    conn.connection_made()
    conn.receive_data(encode_pdu(RQ))
    conn.next_event()
    conn.accept(AC)
    conn.receive_data(pdata(bytes(12)))  # a body of 18 bytes > 16
    assert conn.next_event() == ul.Aborted(2, 6, by_peer=False)
    conn2 = ul.Connection(Role.ACCEPTOR, ul.ConnectionLimits(max_pdu_length=0))
    assert conn2.max_pdu_length == 0


# -- whatever the peer sends, next_event never raises ----------------------------------------

PDU_PIECES = st.sampled_from(
    [
        encode_pdu(RQ),
        encode_pdu(AC),
        encode_pdu(RJ),
        pdata(b"\x00\x01"),
        RELEASE_RQ,
        RELEASE_RP,
        abort_bytes(2, 1),
        bytes.fromhex("05 00 00000002 0000"),
        bytes.fromhex("09 00 00000001 00"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    start=st.sampled_from(["sta2", "sta6", "sta7", "sta13"]),
    chunks=st.lists(st.one_of(PDU_PIECES, st.binary(max_size=40)), max_size=8),
    split=st.integers(min_value=1, max_value=13),
)
def test_next_event_never_raises_on_peer_input(
    role: Role, start: str, chunks: list[bytes], split: int
) -> None:
    link = Link()
    if start == "sta2":
        conn = link.acceptor
        conn.connection_made()
    else:
        link.associate()
        conn = link.requestor if role is Role.REQUESTOR else link.acceptor
        if start == "sta7":
            conn.release()
        elif start == "sta13":
            conn.abort()
    conn.data_to_send()
    data = b"".join(chunks)
    for offset in range(0, len(data), split):
        conn.receive_data(data[offset : offset + split])
        events = drain(conn)
        assert all(not isinstance(e, ul.TransportClosed) for e in events)
    for buffer in conn.data_to_send():  # peer input is only ever answered by an A-ABORT
        assert bytes(buffer)[:7] == bytes.fromhex("07 00 00000004 00")
    if conn.state is State.STA13:
        assert conn.artim_running
    conn.connection_lost()
    assert drain(conn)[-1] == ul.TransportClosed()
    assert conn.state is State.STA1
