"""The client connection (SCU): association control and the DIMSE services.

Theory of operation
-------------------
:class:`ClientConnection` is the twin of fo-dicom's ``IDicomClientConnection``:
every member has a snake_case counterpart (``SendAssociationRequestAsync`` is
:meth:`ClientConnection.send_association_request`, ``OnReceiveAbortAsync`` is
:meth:`ClientConnection.on_receive_abort`, and so on; the table is in
``docs/client.md``). The request queue, the asynchronous operations window
and the request callbacks come from :class:`dicomnet.net.association.Association`.

The Pythonic form is built on the same object::

    async with dicomnet.connect("127.0.0.1", 11112, called_ae_title="PACS") as assoc:
        await assoc.echo()

``connect`` opens the TCP connection, sends the A-ASSOCIATE-RQ and waits for
the answer; a rejection raises :class:`~dicomnet.errors.AssociationRejected`
with its result, source and reason; leaving the block releases the
association (or aborts it when the block raised).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from types import TracebackType
from typing import Any

from dicomnet.core import dimse, ul
from dicomnet.core.negotiation import accepted_by_requestor, build_request
from dicomnet.core.pdu import (
    DEFAULT_MAX_PDU_LENGTH,
    AbortSource,
    AssociateAC,
    AssociateRQ,
    AsyncOpsWindow,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
)
from dicomnet.core.uids import DEFAULT_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS
from dicomnet.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionClosed,
    LocalProtocolError,
    RequestTimeout,
)
from dicomnet.net.association import Association, Handler
from dicomnet.net.provider import SinkFactory
from dicomnet.net.requests import RequestTimeouts
from dicomnet.net.transport import DicomProtocol

__all__ = ["AssociationTimeouts", "ClientConnection", "connect"]

log = logging.getLogger("dicomnet.net.client")

ContextSpec = tuple[str, Sequence[str]]
"""A presentation context to propose: (abstract syntax, transfer syntaxes)."""


@dataclass(frozen=True, slots=True)
class AssociationTimeouts:
    """Timeouts of association control, in seconds.

    Attributes
    ----------
    connect : float
        The TCP connection (and the TLS handshake); without ``acse``, also the
        A-ASSOCIATE-RQ until its AC or RJ arrives (one timer for both).
    release : float
        A-RELEASE-RQ until its RP; past it the association is aborted.
    artim : float
        ARTIM (PS3.8 9.1.5): waiting for the transport to close afterwards.
    acse : float | None
        The A-ASSOCIATE-RQ, once connected, until its AC or RJ arrives
        (DCMTK's ``--acse-timeout``); None leaves it to ``connect``.
    abort : float
        How long an A-ABORT may wait for a socket that stopped taking bytes
        (after a send stall) before the connection is reset instead.
    """

    connect: float = 30.0
    release: float = 30.0
    artim: float = 30.0
    acse: float | None = None
    abort: float = 2.0


class ClientConnection(Association):
    """An association we requested (fo-dicom ``IDicomClientConnection``)."""

    def __init__(
        self,
        *,
        handlers: dict[int, Handler] | None = None,
        timeouts: RequestTimeouts | None = None,
        association_timeouts: AssociationTimeouts | None = None,
    ) -> None:
        super().__init__(handlers=handlers, timeouts=timeouts)
        self.association_timeouts = association_timeouts or AssociationTimeouts()
        self.request: AssociateRQ | None = None
        self.accept: AssociateAC | None = None
        self._answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._released_cleanly = False
        # fo-dicom's OnCStoreRequestAsync and OnNEventReportRequestAsync are methods a
        # subclass overrides: an override taking the request serves those requests.
        cls = type(self)
        for command_field, name in (
            (dimse.CommandField.C_STORE_RQ, "on_c_store_request"),
            (dimse.CommandField.N_EVENT_REPORT_RQ, "on_n_event_report_request"),
        ):
            overridden = getattr(cls, name) is not getattr(ClientConnection, name)
            if overridden and command_field not in self.handlers:
                self.handlers[command_field] = getattr(self, name)

    # -- fo-dicom members: properties -----------------------------------------------------
    @property
    def listener(self) -> asyncio.Future[None]:
        """Completes when the connection stops receiving (fo-dicom ``Listener``)."""
        assert self.protocol is not None
        return self.protocol.closed

    def start_listener(self) -> asyncio.Future[None]:
        """Twin of fo-dicom ``StartListener``: receiving starts with the connection."""
        return self.listener

    @property
    def network_stream(self) -> asyncio.Transport | None:
        """The transport carrying this association (fo-dicom ``NetworkStream``)."""
        return self.protocol.transport if self.protocol else None

    # -- fo-dicom members: sending ----------------------------------------------------------
    def send_association_request(self, rq: AssociateRQ) -> None:
        """Issue the A-ASSOCIATE request (``SendAssociationRequestAsync``).

        PS3.8 Evt1: the RQ PDU goes out when the transport connects (Evt2),
        which :func:`connect` arranges.
        """
        assert self.protocol is not None
        self.request = rq
        self.protocol.request_association(rq)

    def send_association_release_request(self) -> None:
        """Send A-RELEASE-RQ (``SendAssociationReleaseRequestAsync``)."""
        assert self.protocol is not None
        self.protocol.release()

    def send_abort(self, source: int = AbortSource.SERVICE_USER, reason: int = 0) -> None:
        """Send A-ABORT (``SendAbortAsync``); the association ends at once."""
        protocol = self.protocol
        if protocol is None:
            return
        protocol.abort(reason=reason, source=source)
        if self.can_still_process_pdata_tf:
            protocol.close()
        else:
            # After a send stall the A-ABORT waits behind PDUs the peer has not
            # read: it goes out if the socket takes it within a short bound,
            # else the connection is reset.
            protocol.close_within(self.association_timeouts.abort)
        self._ending(AssociationAborted(source, reason, "aborted by the local user"))

    # -- fo-dicom members: callbacks (override or assign) -------------------------------------
    def on_receive_association_accept(self, association: AssociateAC) -> None:
        """The peer accepted (``OnReceiveAssociationAcceptAsync``)."""

    def on_receive_association_reject(self, result: int, source: int, reason: int) -> None:
        """The peer rejected (``OnReceiveAssociationRejectAsync``)."""

    def on_receive_abort(self, source: int, reason: int) -> None:
        """An A-ABORT or A-P-ABORT ended the association (``OnReceiveAbortAsync``)."""

    def on_receive_association_release_response(self) -> None:
        """A-RELEASE-RP arrived (``OnReceiveAssociationReleaseResponseAsync``)."""

    def on_connection_closed(self, exception: BaseException | None) -> None:
        """The TCP connection closed (``OnConnectionClosedAsync``)."""

    def on_c_store_request(self, handler: Handler) -> Handler:
        """Handle C-STORE sub-operations during C-GET (``OnCStoreRequestAsync``).

        Use it as a decorator registering the handler, or override it in a
        subclass as ``async def on_c_store_request(self, request)``, fo-dicom's
        way: the override then serves every C-STORE request.
        """
        self.handlers[dimse.CommandField.C_STORE_RQ] = handler
        return handler

    def on_n_event_report_request(self, handler: Handler) -> Handler:
        """Handle N-EVENT-REPORT, e.g. during N-ACTION (``OnNEventReportRequestAsync``);
        a decorator, or a method to override as :meth:`on_c_store_request`."""
        self.handlers[dimse.CommandField.N_EVENT_REPORT_RQ] = handler
        return handler

    # -- ProtocolOwner ---------------------------------------------------------------------------
    def ul_event(self, event: ul.Event) -> None:
        if isinstance(event, ul.AssociateAccepted):
            assert self.request is not None and self.protocol is not None
            self.accept = event.ac
            self.negotiated = accepted_by_requestor(self.request, event.ac)
            self.protocol.use_contexts(self.negotiated.contexts)
            self.on_receive_association_accept(event.ac)
            if not self._answer.done():
                self._answer.set_result(event.ac)
            if not self.established.done():
                self.established.set_result(self)
        elif isinstance(event, ul.AssociateRejected):
            rj = event.rj
            self.on_receive_association_reject(rj.result, rj.source, rj.reason)
            self._ending(AssociationRejected(rj.result, rj.source, rj.reason))
        elif isinstance(event, ul.ReleaseRequested):
            # The acceptor asked to release, or both did at once: answer it.
            assert self.protocol is not None
            if self.protocol.release_response():
                self._released_cleanly = True
        elif isinstance(event, ul.ReleaseConfirmed):
            self._released_cleanly = True
            self.on_receive_association_release_response()
            if not self._released.done():
                self._released.set_result(None)
            self._ending(ConnectionClosed("association released"))
        elif isinstance(event, ul.Aborted):
            self.on_receive_abort(event.source, event.reason)
            detail = "by the peer" if event.by_peer else "protocol error"
            self._ending(AssociationAborted(event.source, event.reason, detail))
        elif isinstance(event, ul.TransportClosed):
            # fo-dicom passes no exception when the association ended normally
            error = self._ended or ConnectionClosed("connection closed by the peer")
            self.on_connection_closed(None if self._released_cleanly else error)
            self._ending(error)

    def _ending(self, error: BaseException) -> None:
        if not self._answer.done():
            self._answer.set_exception(error)
            self._answer.exception()
        if not self._released.done():
            self._released.set_exception(error)
            self._released.exception()
        self.end(error)

    # -- the Pythonic API ------------------------------------------------------------------------
    async def release(self) -> None:
        """Wait for outstanding requests, then release (A-RELEASE-RQ, RP)."""
        protocol = self.protocol
        if protocol is None or not protocol.established:
            return
        if not self.can_still_process_pdata_tf:
            # A send stalled part way through a message: the peer holds half a
            # DIMSE message and may never read the A-RELEASE-RQ. Abort instead.
            log.warning("release after a stalled send: aborting the association instead")
            await self.abort()
            return
        timeout = self.association_timeouts.release
        pending = [r.completed for r in list(self._outstanding.values()) + list(self._queue)]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        self.send_association_release_request()
        try:
            await asyncio.wait_for(asyncio.shield(self._released), timeout)
        except asyncio.TimeoutError:
            self.send_abort()
            raise RequestTimeout("release", timeout, "no A-RELEASE-RP") from None
        except ConnectionClosed:
            pass
        await _closed(protocol, self.association_timeouts.artim)

    async def abort(self, reason: int = 0) -> None:
        """Abort the association (A-ABORT, source service user)."""
        self.send_abort(AbortSource.SERVICE_USER, reason)
        if self.protocol is not None:
            await _closed(self.protocol, self.association_timeouts.artim)

    async def __aenter__(self) -> ClientConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ended is not None:
            return
        if exc is None:
            await self.release()
        else:
            await self.abort()


async def _closed(protocol: DicomProtocol, timeout: float) -> None:
    """Wait for the TCP connection to close; close it ourselves past ``timeout``."""
    try:
        await asyncio.wait_for(asyncio.shield(protocol.closed), timeout)
    except asyncio.TimeoutError:
        protocol.close(reset=True)


class _Connecting:
    """What :func:`connect` returns: awaitable, and an async context manager."""

    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine
        self._association: ClientConnection | None = None

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._coroutine.__await__()  # type: ignore[no-any-return]

    async def __aenter__(self) -> ClientConnection:
        self._association = await self._coroutine
        return self._association

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._association is not None
        await self._association.__aexit__(exc_type, exc, tb)


def connect(
    host: str,
    port: int,
    *,
    called_ae_title: str = "ANY-SCP",
    calling_ae_title: str = "DICOMNET",
    contexts: Iterable[ContextSpec] | None = None,
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    max_operations_invoked: int = 1,
    max_operations_performed: int = 1,
    roles: Iterable[RoleSelection] = (),
    user_identity: UserIdentityRQ | None = None,
    extended: Iterable[SOPClassExtendedNegotiation] = (),
    common_extended: Iterable[SOPClassCommonExtendedNegotiation] = (),
    handlers: dict[int, Handler] | None = None,
    timeouts: RequestTimeouts | None = None,
    association_timeouts: AssociationTimeouts | None = None,
    connection_class: type[ClientConnection] = ClientConnection,
    dataset_sink: SinkFactory | None = None,
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
) -> _Connecting:
    """Open an association; use as ``async with connect(...) as assoc`` or ``await``.

    Parameters
    ----------
    contexts : iterable of (abstract syntax, transfer syntaxes), optional
        Presentation contexts to propose; Verification is added when missing,
        so ``echo()`` works on every association.
    max_operations_invoked, max_operations_performed : int
        The asynchronous operations window to propose (PS3.7 D.3.3.3); the
        item is sent only when either differs from 1.
    roles : iterable of RoleSelection
        Role selection items; a C-GET SCU asks for the SCP role of the storage
        classes it wants back (see :func:`dicomnet.net.retrieve.get_contexts`).
    user_identity : UserIdentityRQ, optional
        User Identity Negotiation (PS3.7 D.3.3.7), any of its five types; the
        acceptor's response is ``negotiated.user_identity_response`` (None
        when it sent none, empty for types 1 and 2).
    extended, common_extended : iterable, optional
        SOP Class Extended and Common Extended Negotiation items (PS3.7
        D.3.3.5, D.3.3.6), e.g. relational queries for a Q/R model. The
        acceptor's answers are ``negotiated.sop_class_extended`` (by SOP
        class); a declined common extended item shows as its SOP class's
        contexts refused, the accepted ones in
        ``negotiated.sop_class_common_extended``.
    handlers : dict, optional
        Handlers of requests the peer sends us, by command field (C-STORE
        sub-operations of C-GET, N-EVENT-REPORT).
    dataset_sink : callable, optional
        ``factory(association, context_id, command)``: where the datasets of
        those requests go as they arrive, e.g. ``FolderStorage(...).sink``.
    ssl : ssl.SSLContext, optional
        Connect over TLS (see :func:`dicomnet.net.tls.client_context`); the TLS
        handshake counts in the ``connect`` timeout.
    server_hostname : str, optional
        The name to check the server's certificate against, when the context
        checks host names.
    """
    proposed = list(contexts) if contexts is not None else []
    if not any(abstract == VERIFICATION_SOP_CLASS for abstract, _ in proposed):
        proposed.append((VERIFICATION_SOP_CLASS, DEFAULT_TRANSFER_SYNTAXES))
    async_ops = None
    if (max_operations_invoked, max_operations_performed) != (1, 1):
        async_ops = AsyncOpsWindow(max_operations_invoked, max_operations_performed)
    rq = build_request(
        called_ae_title,
        calling_ae_title,
        [(abstract, tuple(syntaxes)) for abstract, syntaxes in proposed],
        max_pdu_length=max_pdu_length,
        async_ops=async_ops,
        roles=tuple(roles),
        user_identity=user_identity,
        extended=tuple(extended),
        common_extended=tuple(common_extended),
    )
    return _Connecting(
        _open(
            host,
            port,
            rq,
            max_pdu_length,
            handlers,
            timeouts,
            association_timeouts,
            connection_class,
            dataset_sink,
            ssl,
            server_hostname,
        )
    )


async def _open(
    host: str,
    port: int,
    rq: AssociateRQ,
    max_pdu_length: int,
    handlers: dict[int, Handler] | None,
    timeouts: RequestTimeouts | None,
    association_timeouts: AssociationTimeouts | None,
    connection_class: type[ClientConnection],
    dataset_sink: SinkFactory | None = None,
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
) -> ClientConnection:
    loop = asyncio.get_running_loop()
    association = connection_class(
        handlers=handlers, timeouts=timeouts, association_timeouts=association_timeouts
    )
    association.sink_factory = dataset_sink
    limits = association.association_timeouts
    protocol = DicomProtocol(
        ul.Role.REQUESTOR,
        association,
        ul.ConnectionLimits(max_pdu_length=max_pdu_length),
        artim_timeout=limits.artim,
    )
    association.protocol = protocol
    association.send_association_request(rq)  # Evt1: Sta1 -> Sta4, awaiting the transport

    async def connecting() -> None:
        if ssl is None:
            await loop.create_connection(lambda: protocol, host, port)  # Evt2 sends the RQ
        else:
            await loop.create_connection(
                lambda: protocol,
                host,
                port,
                ssl=ssl,
                server_hostname=server_hostname or (host if ssl.check_hostname else ""),
                ssl_handshake_timeout=limits.connect,
            )

    async def associate() -> ClientConnection:
        await connecting()
        await association._answer
        return association

    timer, seconds = "association", limits.connect
    try:
        if limits.acse is None:
            return await asyncio.wait_for(associate(), limits.connect)
        timer = "connect"
        await asyncio.wait_for(connecting(), limits.connect)
        timer, seconds = "acse", limits.acse
        await asyncio.wait_for(asyncio.shield(association._answer), limits.acse)
        return association
    except asyncio.TimeoutError:
        protocol.close(reset=True)
        raise RequestTimeout(timer, seconds, f"{host}:{port}") from None
    except OSError as exc:
        raise ConnectionClosed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    except LocalProtocolError:
        raise
