"""asyncio transport for the sans-IO Upper Layer.

Theory of operation
-------------------
:class:`DicomProtocol` is an :class:`asyncio.BufferedProtocol`: the event loop
receives straight into the :class:`~dicomnet.core.ul.Connection`'s reusable buffer
(``get_buffer`` / ``buffer_updated``), so received bytes are never copied
before framing. The transport only forwards: the connection it owns frames
PDUs, runs the PS3.8 state table and assembles P-DATA into DIMSE messages
(``messages=True``), and each of its events goes to the owner (the client or
server association) synchronously, while the memoryviews are still valid:
:class:`~dicomnet.core.ul.MessageReceived` to ``message_received``, the others
to ``ul_event``.

The owner drives the association through a small API, never through the
connection itself: :attr:`~DicomProtocol.established`,
:meth:`~DicomProtocol.request_association`, :meth:`~DicomProtocol.accept`,
:meth:`~DicomProtocol.reject`, :meth:`~DicomProtocol.use_contexts`,
:meth:`~DicomProtocol.send_message`, :meth:`~DicomProtocol.release`,
:meth:`~DicomProtocol.release_response`, :meth:`~DicomProtocol.abort`,
:meth:`~DicomProtocol.abort_invalid` and :meth:`~DicomProtocol.close`.
Each primitive flushes what it queued.

After every input the protocol *flushes*: it drains the connection's queued
buffers with one ``transport.writelines`` call, arms or disarms the ARTIM
timer as the connection asks, and closes the socket when the connection says
so. Sending a DIMSE message is the only awaitable step: it writes the PDUs of
one message in batches and waits for the transport to drain whenever the
write buffer passes its high-water mark, so a 2 GB dataset never sits in
memory twice.

On Python 3.12+ and with uvloop, ``writelines`` is a true gather write; on
3.11's selector loop asyncio joins each batch before sending, so batches are
kept to :data:`SEND_BATCH_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast

from dicomnet.core import ul
from dicomnet.core.codec import fragment_message
from dicomnet.core.pdu import AbortSource, AssociateAC, AssociateRJ, AssociateRQ
from dicomnet.core.text import printable
from dicomnet.errors import ProtocolError
from dicomnet.net.pdu_log import PduTracer, pdu_log
from dicomnet.net.provider import DatasetSink

__all__ = ["SEND_BATCH_BYTES", "DicomProtocol", "ProtocolOwner", "set_nodelay"]

log = logging.getLogger("dicomnet.net.transport")

SEND_BATCH_BYTES = 4 << 20
"""Bytes handed to one ``writelines`` call when sending a large dataset."""

WRITE_BUFFER_HIGH = 8 << 20
"""High-water mark of the transport's write buffer before sending waits."""

RECHECK_DELAY = 0.001
RECHECKS = 64
"""A timer that finds the peer's bytes waiting (or its window open) looks again
this many times, this many seconds apart, letting the event loop read first."""


def peer_moved(transport: asyncio.BaseTransport | None, *, writing: bool = False) -> bool:
    """Whether the socket holds bytes from the peer not yet read (or, ``writing``,
    has room again) that the event loop has not yet handled.

    After the process stalls (SIGSTOP, a VM pause, a long GC or fsync), the
    event loop runs overdue timers before it reads: on Linux, ``epoll_wait``
    returns EINTR on SIGCONT and Python then reports no event at all. A timer
    that fired now would judge the state of the moment the process stopped;
    what the socket holds is what the peer actually did, in time.
    """
    if transport is None or transport.is_closing():
        return False
    if not writing and not getattr(transport, "is_reading", lambda: True)():
        return False  # reading is paused on purpose: bytes wait there by design
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLOUT if writing else select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


class ProtocolOwner(Protocol):
    """What :class:`DicomProtocol` reports to: a client or server association."""

    def ul_event(self, event: ul.Event) -> None:
        """A user-facing Upper Layer event other than P-DATA."""

    def message_received(self, context_id: int, command: dict[int, Any], dataset: Any) -> None:
        """A complete DIMSE message (dataset: None, a bytearray, or the sink)."""

    def dataset_sink(self, context_id: int, command: dict[int, Any]) -> DatasetSink | None:
        """A sink for the dataset that this command announces, or None for memory."""

    def protocol_error(self, exc: Exception) -> None:
        """The peer broke PS3.8 or PS3.7 (``exc``); the association is aborting."""

    def busy(self) -> bool:
        """Whether a request is being served: the idle timeout waits meanwhile."""


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: with it on, each small DIMSE message waits for a delayed ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - platform without the option
            log.debug("TCP_NODELAY not available on %r", sock)


class DicomProtocol(asyncio.BufferedProtocol):
    """Bridges one TCP connection and one :class:`dicomnet.core.ul.Connection`.

    Parameters
    ----------
    role : dicomnet.core.ul.Role
        Which end this is; the protocol makes its
        :class:`dicomnet.core.ul.Connection`, assembling messages.
    owner : ProtocolOwner
        Receives events and messages, and chooses dataset sinks.
    limits : dicomnet.core.ul.ConnectionLimits, optional
        What the peer may send.
    artim_timeout : float
        Seconds of the ARTIM timer (PS3.8 9.1.5).
    idle_timeout : float
        Seconds an established association may go without a complete PDU
        from the peer while the owner is not ``busy()``; then it is aborted.
        0 = never. A trickle of bytes that completes no PDU is not activity,
        so a slow-drip peer is cut off too.
    write_timeout : float
        Seconds the write buffer may stay above its high-water mark (a peer
        that does not read); then the connection is dropped at once, since
        no PDU, not even an A-ABORT, could get through. 0 = never.
    """

    def __init__(
        self,
        role: ul.Role,
        owner: ProtocolOwner,
        limits: ul.ConnectionLimits | None = None,
        *,
        artim_timeout: float = 30.0,
        idle_timeout: float = 0.0,
        write_timeout: float = 0.0,
    ) -> None:
        self.connection = ul.Connection(
            role, limits, messages=True, dataset_sink=self._dataset_sink
        )
        self.owner = owner
        self.artim_timeout = artim_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._artim: asyncio.TimerHandle | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.peername: Any = None
        self._open_sink: DatasetSink | None = None
        self._last_pdu = self._loop.time()
        self._pdus_seen = 0
        self._idle: asyncio.TimerHandle | None = None
        self._write_stalled: asyncio.TimerHandle | None = None
        self._reported: BaseException | None = None
        """The protocol error last logged, so that each is logged once."""
        self._owner_told: BaseException | None = None
        """The protocol error last told to the owner, so that each is told once."""
        self._received_any = False
        self.bytes_handed = 0
        """Bytes handed to the transport so far (see :attr:`bytes_accepted`)."""
        self._traced: tuple[PduTracer, PduTracer] | None = None
        self._receiving: memoryview | None = None
        self._flush_pending = False

    # -- asyncio.BufferedProtocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        if self.peername is None:  # else set by an accept gate: the client behind a proxy
            self.peername = transport.get_extra_info("peername")
        set_nodelay(transport)
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        if pdu_log.isEnabledFor(logging.DEBUG):  # dicomnet -d: every PDU in summary
            self._traced = (
                PduTracer("sent to", self.peername),
                PduTracer("received from", self.peername),
            )
        self.connection.connection_made()
        if self.idle_timeout > 0:
            self._idle = self._loop.call_later(self.idle_timeout, self._idle_check)
        self._process()

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self.connection.get_buffer(sizehint)
        if self._traced is not None:
            self._receiving = buffer
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._received_any = True
        if self._traced is not None and self._receiving is not None:
            self._traced[1].feed(self._receiving[:nbytes])
        self.connection.buffer_updated(nbytes)
        self._process()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection.state is ul.State.STA2:
            log.log(
                logging.INFO if self._received_any else logging.DEBUG,
                "connection from %s closed before an association request",
                self.peername,
            )
        self._cancel_artim()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._discard_open_sink()
        self._write_resumed()
        self.connection.connection_lost()
        self._process(closing=True)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._can_write.clear()
        if self.write_timeout > 0 and self._write_stalled is None:
            self._write_stalled = self._loop.call_later(self.write_timeout, self._write_timed_out)

    def resume_writing(self) -> None:
        self._write_resumed()

    def _write_resumed(self) -> None:
        self._can_write.set()
        if self._write_stalled is not None:
            self._write_stalled.cancel()
            self._write_stalled = None

    def _write_timed_out(self, recheck: int = RECHECKS) -> None:
        self._write_stalled = None
        if recheck and peer_moved(self.transport, writing=True):
            self._write_stalled = self._loop.call_later(
                RECHECK_DELAY, self._write_timed_out, recheck - 1
            )
            return
        if self.transport is not None and not self.transport.is_closing():
            log.warning(
                "dropping the connection to %s: it read nothing for %.0f s",
                self.peername,
                self.write_timeout,
            )
            self.transport.abort()

    # -- events ---------------------------------------------------------------------
    def _process(self, *, closing: bool = False) -> None:
        """Forward every event of the received PDUs, then flush what the UL queued."""
        connection = self.connection
        owner = self.owner
        while True:
            event = connection.next_event()
            if event is None:
                break
            if type(event) is ul.MessageReceived:
                dataset = event.dataset
                if dataset is not None and dataset is self._open_sink:
                    self._open_sink = None
                owner.message_received(event.context_id, event.command, dataset)
                continue
            if type(event) is ul.Aborted:
                self._discard_open_sink()
                error = connection.protocol_error
                if not event.by_peer and error is not None:
                    self._owner_told = error
                    owner.protocol_error(error)
            owner.ul_event(event)
        if connection.pdus_received != self._pdus_seen:
            self._pdus_seen = connection.pdus_received
            self._last_pdu = self._loop.time()
        self._report_abort()
        if not closing:
            self.flush()

    def _report_abort(self) -> None:
        """Log the protocol error the connection aborted for, once: the one place
        where every abort for bad input, found by any layer, is logged."""
        error = self.connection.protocol_error
        if error is not None and error is not self._reported:
            self._reported = error
            log.warning("aborting association with %s: %s", self.peername, printable(error))
            if error is not self._owner_told:  # an abort without an Aborted event (Sta2)
                self._owner_told = error
                self.owner.protocol_error(error)

    def _dataset_sink(self, context_id: int, command: dict[int, Any]) -> DatasetSink | None:
        sink = self.owner.dataset_sink(context_id, command)
        self._open_sink = sink
        return sink

    def _discard_open_sink(self) -> None:
        """A dataset cut off mid-stream leaves nothing behind (its temp file goes)."""
        sink, self._open_sink = self._open_sink, None
        if sink is not None:
            log.info("dataset from %s cut off before its last fragment: discarded", self.peername)
            sink.discard()

    def flush(self) -> None:
        """Write what the connection queued; follow its ARTIM and close requests."""
        self._report_abort()
        transport = self.transport
        connection = self.connection
        if transport is None:
            return  # nothing can be written before the transport connects
        buffers = connection.data_to_send()
        if not transport.is_closing():
            if buffers:
                # bytes and byte views (fragment_message casts to "B"): len is the size
                sized = cast("list[bytes]", buffers)
                self.bytes_handed += sum(map(len, sized))
                if self._traced is not None:
                    for buffer in buffers:
                        self._traced[0].feed(buffer)
                transport.writelines(sized)
            if connection.should_close:
                transport.close()
        if connection.artim_running:
            if self._artim is None:
                self._artim = self._loop.call_later(self.artim_timeout, self._artim_fired)
        else:
            self._cancel_artim()

    def _idle_check(self, recheck: int = RECHECKS) -> None:
        """Abort an established association whose peer has gone quiet; else look again later."""
        self._idle = None
        if recheck and peer_moved(self.transport):
            self._idle = self._loop.call_later(RECHECK_DELAY, self._idle_check, recheck - 1)
            return
        quiet = self._loop.time() - self._last_pdu
        if self.owner.busy():
            self._idle = self._loop.call_later(min(self.idle_timeout, 1.0), self._idle_check)
            return
        if quiet < self.idle_timeout:
            self._idle = self._loop.call_later(self.idle_timeout - quiet, self._idle_check)
            return
        if self.connection.state in ul.ESTABLISHED_STATES:
            log.warning("aborting association with %s: idle for %.0f s", self.peername, quiet)
            self._discard_open_sink()
            self.connection.abort()
            self.flush()
        elif self.transport is not None and not self.transport.is_closing():
            self._idle = self._loop.call_later(self.idle_timeout, self._idle_check)

    def _artim_fired(self, recheck: int = RECHECKS) -> None:
        self._artim = None
        if recheck and peer_moved(self.transport):
            self._artim = self._loop.call_later(RECHECK_DELAY, self._artim_fired, recheck - 1)
            return
        if self.connection.state is ul.State.STA2:
            log.info(
                "no association request from %s within %.0f s: closing",
                self.peername,
                self.artim_timeout,
            )
        self.connection.artim_expired()
        self._process()

    def _cancel_artim(self) -> None:
        if self._artim is not None:
            self._artim.cancel()
            self._artim = None

    # -- the owner's API: association primitives (PS3.8 9.2.3 local events) -------------
    @property
    def established(self) -> bool:
        """Whether the association exists (Sta6 to Sta12): data may flow, release
        or abort may be asked."""
        return self.connection.state in ul.ESTABLISHED_STATES

    def request_association(self, rq: AssociateRQ) -> None:
        """A-ASSOCIATE request (Evt1): sent once the transport connects."""
        self.connection.request_association(rq)
        self.flush()

    def accept(self, ac: AssociateAC) -> None:
        """A-ASSOCIATE response, accept (Evt7): send the A-ASSOCIATE-AC."""
        self.connection.accept(ac)
        self.flush()

    def reject(self, rj: AssociateRJ) -> None:
        """A-ASSOCIATE response, reject (Evt8): send the A-ASSOCIATE-RJ, then close."""
        self.connection.reject(rj)
        self.flush()

    def use_contexts(self, context_ids: Iterable[int]) -> None:
        """The negotiated presentation contexts: a PDV on any other aborts."""
        self.connection.use_contexts(context_ids)

    def release(self) -> None:
        """A-RELEASE request (Evt11): send the A-RELEASE-RQ."""
        self.connection.release()
        self.flush()

    def release_response(self) -> bool:
        """A-RELEASE response (Evt14) if the UL awaits one (Sta8, Sta9, Sta12);
        whether it was sent."""
        if self.connection.state not in ul.RELEASE_RESPONSE_STATES:
            return False
        self.connection.release_response()
        self.flush()
        return True

    def abort(self, reason: int = 0, source: int = AbortSource.SERVICE_USER) -> bool:
        """A-ABORT request (Evt15) if the UL state has one (Sta3 to Sta12); whether
        an A-ABORT was queued. A dataset still arriving is discarded."""
        if self.connection.state not in ul.ABORTABLE_STATES:
            return False
        self._discard_open_sink()
        self.connection.abort(reason=reason, source=source)
        self.flush()
        return True

    def abort_invalid(self, error: ProtocolError) -> None:
        """A message the owner found breaking PS3.7 is an invalid PDU (Evt19):
        AA-8, with the error's source and reason, if the association exists."""
        if self.connection.state in ul.ESTABLISHED_STATES:
            self._discard_open_sink()
            self.connection.invalid_pdu(error)
            self.flush()

    def close(self, *, reset: bool = False) -> None:
        """Close the TCP connection after what is queued (``reset``: at once,
        dropping it)."""
        transport = self.transport
        if transport is None:
            return
        if reset:
            transport.abort()
        elif not transport.is_closing():
            transport.close()

    # -- sending --------------------------------------------------------------------
    @property
    def bytes_accepted(self) -> int:
        """Bytes the socket has taken: handed to the transport and no longer in
        its write buffer. A send that leaves this unchanged is stalled."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return self.bytes_handed - buffered

    def close_within(self, seconds: float) -> None:
        """Close once what is queued has gone out, or reset the connection if the
        socket has not taken it within ``seconds`` (a peer that stopped reading)."""
        transport = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        if not self.closed.done():
            timer = self._loop.call_later(seconds, lambda: self.close(reset=True))
            self.closed.add_done_callback(lambda _: timer.cancel())

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        await self._can_write.wait()

    async def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: Any,
        max_pdu_length: int,
        *,
        flush: bool = True,
    ) -> None:
        """Send one DIMSE message as P-DATA-TF PDUs, waiting on back-pressure.

        The caller holds the association's send lock: PS3.8 Annex E forbids
        interleaving the fragments of two messages. The PDUs are views of
        ``command`` and ``dataset`` (a file's map), never joined. With
        ``flush=False`` the last (or only) batch stays queued in the connection
        for the caller's :meth:`flush`, so the PDUs of several messages ready
        in one loop turn leave in one gathered write; a large dataset still
        goes out in :data:`SEND_BATCH_BYTES` batches as the socket takes them.
        """
        if self.fits_one_write(dataset):
            self.queue_message(context_id, command, dataset, max_pdu_length)
            if flush:
                self.flush()
            return
        buffers = fragment_message(context_id, command, dataset, max_pdu_length)
        start = 0
        if len(buffers) > 2 * 8 and dataset is not None:
            batch_bytes = 0
            for index in range(1, len(buffers), 2):
                batch_bytes += len(buffers[index]) + 12
                if batch_bytes >= SEND_BATCH_BYTES:
                    self._send_batch(buffers[start : index + 1])
                    start = index + 1
                    batch_bytes = 0
                    if not self._can_write.is_set():
                        await self.drain()
        if start < len(buffers):
            self.connection.send_pdata(buffers[start:] if start else buffers)
            if flush:
                self.flush()

    def flush_soon(self) -> None:
        """Flush once this loop turn's callbacks have run: every message queued
        meanwhile leaves in the same gathered write."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.flush()

    @staticmethod
    def fits_one_write(dataset: Any) -> bool:
        """Whether a message with this dataset goes out in one batch, never
        waiting for the socket (:meth:`queue_message` may take it)."""
        if dataset is None:
            return True
        try:
            return len(dataset) < SEND_BATCH_BYTES
        except TypeError:  # not a buffer: let the send loop report it
            return False

    def queue_message(
        self, context_id: int, command: bytes, dataset: Any, max_pdu_length: int
    ) -> None:
        """Queue one small DIMSE message's PDUs for the next :meth:`flush`.

        The PDUs are views of ``command`` and ``dataset`` (a file's map),
        never joined; the caller holds the send lock or cannot yield before
        the message is queued whole (PS3.8 Annex E).
        """
        self.connection.send_pdata(fragment_message(context_id, command, dataset, max_pdu_length))

    def _send_batch(self, buffers: Sequence[Any]) -> None:
        self.connection.send_pdata(list(buffers))
        self.flush()
