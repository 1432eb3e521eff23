"""The listener (SCP): bind rules, client cap, association policy, handlers.

Theory of operation
-------------------
:meth:`Listener.listen` binds with the semantics of LEADTOOLS
``DicomNet.Listen(hostAddress, hostPort, maxNumberOfPeers, ipType)``:

* ``""`` binds this machine's primary address (the default route's source,
  found without sending anything; else an interface's; else loopback, see
  :mod:`dicomnet.net.addresses`), ``"*"`` every interface, anything else that
  address, which must be of a family ``ip_type`` allows
  (:class:`~dicomnet.net.addresses.BindError` otherwise);
* port 0 takes the first free port, readable afterwards as :attr:`Listener.port`;
* ``max_number_of_peers`` is the ``listen()`` backlog;
* ``ip_type`` is :attr:`IPType.IPV4` (the default), :attr:`IPType.IPV6`, or
  :attr:`IPType.IPV4_OR_IPV6`, which with ``"*"`` is one dual-stack socket
  (IPv4 alone on a host without IPv6).

Every accepted connection gets a :class:`ServerAssociation` on the same event
loop (no thread per association). When its A-ASSOCIATE-RQ arrives the
listener counts its clients: past ``max_associations`` the request is answered
at once with A-ASSOCIATE-RJ (transient, service-provider presentation,
local-limit-exceeded) and holds no slot. Otherwise the ``on_association_request``
hook may reject it, then :func:`dicomnet.core.negotiation.negotiate_as_acceptor`
answers it from the listener's policy.

Handlers are registered per service; an exception in a handler answers that
request with a failure status and never reaches the listener. The
Query/Retrieve services register with the information models they serve,
which adds those models to the accepted contexts: :meth:`Listener.on_c_find`
takes a handler yielding matches; :meth:`Listener.on_c_move` and
:meth:`Listener.on_c_get` take a *selector* returning the instances to send,
and :mod:`dicomnet.net.retrieve` runs the C-STORE sub-operations (C-MOVE to an
AE title of :attr:`Listener.move_destinations`).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ssl import SSLContext
from typing import Any

from dicomnet.core import ul
from dicomnet.core.dimse import CommandField
from dicomnet.core.negotiation import (
    MAX_PRESENTATION_CONTEXTS,
    AcceptorPolicy,
    SupportedContext,
    accepted_by_acceptor,
    negotiate_as_acceptor,
)
from dicomnet.core.pdu import (
    DEFAULT_MAX_PDU_LENGTH,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    RejectResult,
    RejectSource,
)
from dicomnet.core.text import printable
from dicomnet.core.uids import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
)
from dicomnet.errors import AssociationAborted, ConnectionClosed
from dicomnet.net.addresses import bind_plan
from dicomnet.net.association import Association, Handler, IncomingRequest
from dicomnet.net.provider import DatasetSink, SinkFactory
from dicomnet.net.proxy import AcceptGate, ProxyPolicy
from dicomnet.net.requests import RequestTimeouts
from dicomnet.net.retrieve import MoveDestination, Selector, c_get_handler, c_move_handler
from dicomnet.net.transport import DicomProtocol

__all__ = ["IPType", "Listener", "ListenerLimits", "ServerAssociation"]

log = logging.getLogger("dicomnet.net.listener")

LOCAL_LIMIT_EXCEEDED = AssociateRJ(
    RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION, 2
)
"""The A-ASSOCIATE-RJ answered past the association cap (PS3.8 Table 9-21)."""


class IPType(enum.IntFlag):
    """Address families a listener serves (LEADTOOLS ``DicomNetIpTypeFlags``)."""

    IPV4 = 1
    IPV6 = 2
    IPV4_OR_IPV6 = 3


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Limits of a listener, each with its default.

    Attributes
    ----------
    max_associations : int
        Associations served at once; the next request is rejected (0 = no cap).
    max_pdu_length : int
        Our Maximum Length Received for P-DATA-TF (0 = unlimited, 64 MiB cap).
    artim_timeout : float
        Seconds a connection may take to send its A-ASSOCIATE-RQ, and to close
        after a release or abort (PS3.8 9.1.5).
    max_operations_performed : int
        Requests of one association served concurrently (async window).
    tls_handshake_timeout : float
        Seconds a TLS peer has to finish its handshake after the accept.
    max_associations_per_calling_ae : int
        Associations one calling AE title may hold at once (0 = no cap).
    max_associations_per_address : int
        Associations one peer IP address may hold at once (0 = no cap).
    idle_timeout : float
        Seconds an established association may go without a complete PDU
        from its peer while none of its requests is being served; then it is
        aborted (A-ABORT). Bytes trickled without completing a PDU do not
        count as activity. 0 = never.
    max_dataset_size : int
        Bytes of one dataset streamed to a dataset sink (the archive's C-STORE
        files); past it the dataset is discarded and the association aborted
        (A-ABORT, invalid parameter value). 0 = no limit.
    max_buffered_dataset_size : int
        Bytes of one dataset gathered in memory (identifiers, N-service
        datasets, C-STORE datasets of a handler without a sink), with the
        same ending. 0 = no limit.
    dimse_timeout : float
        Seconds the listener waits for the peer's response to a request of
        its own (C-STORE sub-operations of C-GET and C-MOVE, N-EVENT-REPORT),
        first and between pendings; the request then fails. 0 = never.
    write_timeout : float
        Seconds a write may stay blocked on a peer that does not read (the
        send buffer full); then the connection is dropped. 0 = never.
    max_presentation_contexts : int
        Presentation contexts in one request, 1-128; more is rejected (1, 1, 1).

    Over any cap, a request is rejected with A-ASSOCIATE-RJ (2, 3, 2):
    transient, local limit exceeded.
    """

    max_associations: int = 64
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    artim_timeout: float = 30.0
    max_operations_performed: int = 64
    tls_handshake_timeout: float = 10.0
    max_associations_per_calling_ae: int = 0
    max_associations_per_address: int = 0
    idle_timeout: float = 300.0
    max_dataset_size: int = 8 << 30
    max_buffered_dataset_size: int = 512 << 20
    dimse_timeout: float = 60.0
    write_timeout: float = 60.0
    max_presentation_contexts: int = MAX_PRESENTATION_CONTEXTS

    def request_timeouts(self) -> RequestTimeouts:
        """The timeouts of the listener's own requests, from these limits."""
        dimse = self.dimse_timeout or None
        return RequestTimeouts(
            send=self.write_timeout or None, first_response=dimse, between_responses=dimse
        )


class ServerAssociation(Association):
    """One accepted connection of a :class:`Listener`, from RQ to close."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(handlers=listener.handlers, timeouts=listener.timeouts)
        self.listener = listener
        self.request: AssociateRQ | None = None
        self.accept: AssociateAC | None = None
        self.rejection: AssociateRJ | None = None
        self.counted = False
        self.admitted = False
        self.number = next(listener.numbers)
        """This association's number in its listener, for logs and events."""
        self.opened = time.monotonic()
        self.instances = 0
        """Instances stored on this association (counted by the storage handler)."""
        self.bytes = 0
        """Dataset bytes of those instances."""
        self._reported = False
        self.input_refused = False
        """Whether this association was aborted for bad input."""

    @property
    def peer_host(self) -> str:
        """The peer's IP address, or "" before the connection is made."""
        peername = self.protocol.peername if self.protocol is not None else None
        return str(peername[0]) if peername else ""

    @property
    def peer(self) -> str:
        """``host:port`` of the peer, or "" before the connection is made."""
        peername = self.protocol.peername if self.protocol is not None else None
        if not peername:
            return ""
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def calling_ae_title(self) -> str:
        """The requestor's AE title as sent, unpadded: the value (the per-AE cap's
        key, the Source AE Title of what it stores, the event log), never escaped
        here; a log line escapes it (:func:`dicomnet.core.text.printable`)."""
        return self.request.calling_ae_title if self.request else ""

    @property
    def called_ae_title(self) -> str:
        """The AE title the requestor called, as :attr:`calling_ae_title`."""
        return self.request.called_ae_title if self.request else ""

    # -- ProtocolOwner -----------------------------------------------------------------
    def ul_event(self, event: ul.Event) -> None:
        """Act on an Upper Layer event of the acceptor (PS3.8 9.2): negotiate an
        A-ASSOCIATE-RQ, release once in-flight requests are answered, log aborts."""
        if isinstance(event, ul.AssociateRequested):
            self._association_requested(event.rq)
        elif isinstance(event, ul.ReleaseRequested):
            asyncio.get_running_loop().create_task(self._release_when_idle())
        elif isinstance(event, ul.Aborted):
            if event.by_peer:
                log.info(
                    "association %d with %s aborted by the peer (source %d, reason %d)",
                    self.number,
                    self.peer,
                    event.source,
                    event.reason,
                )
            self._ended_by(AssociationAborted(event.source, event.reason))
        elif isinstance(event, ul.TransportClosed):
            self._ended_by(ConnectionClosed("connection closed"))

    def protocol_error(self, exc: Exception) -> None:
        """The peer's bad input aborts the association: observers hear
        ``input_refused``, once per association (the association and the
        transport may both report the same error)."""
        if not self.input_refused:
            self.input_refused = True
            self.listener.notify("input_refused", self, exc)

    def _association_requested(self, rq: AssociateRQ) -> None:
        listener = self.listener
        protocol = self.protocol
        assert protocol is not None
        self.request = rq
        cap = listener.limits.max_associations
        answer: AssociateAC | AssociateRJ | None = None
        over = listener.over_limit(rq.calling_ae_title.strip(), self.peer_host)
        if listener.closing or (cap and listener.association_count >= cap) or over:
            answer = LOCAL_LIMIT_EXCEEDED
            log.info(
                "rejecting %s from %s: %d associations open",
                printable(rq.calling_ae_title, quote=True),
                protocol.peername,
                cap,
            )
        elif listener.on_association_request is not None:
            try:
                answer = listener.on_association_request(self, rq)
            except Exception:
                log.exception("association request hook failed")
                answer = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 1)
        if answer is None:
            answer = negotiate_as_acceptor(rq, listener.policy)
        if isinstance(answer, AssociateAC) and listener.admit is not None:
            if listener.admit(self):
                self.admitted = True
            else:
                answer = LOCAL_LIMIT_EXCEEDED  # a cap shared with other processes
        if isinstance(answer, AssociateRJ):
            if answer is not LOCAL_LIMIT_EXCEEDED:
                log.info(
                    "rejecting association from %s (calling %s, called %s): "
                    "result %d, source %d, reason %d",
                    self.peer,
                    printable(rq.calling_ae_title, quote=True),
                    printable(rq.called_ae_title, quote=True),
                    answer.result,
                    answer.source,
                    answer.reason,
                )
            self.rejection = answer
            protocol.reject(answer)
            listener.notify("association_rejected", self, answer)
        else:
            self.accept = answer
            refused = [(c.context_id, c.result) for c in answer.presentation_contexts if c.result]
            if refused:
                log.debug("association from %s: contexts refused %s", self.peer, refused)
            self.negotiated = accepted_by_acceptor(rq, answer)
            protocol.use_contexts(self.negotiated.contexts)
            protocol.accept(answer)
            self.counted = True
            listener.association_count += 1
            listener.count(self, 1)
            if not self.established.done():
                self.established.set_result(self)
            listener.notify("association_accepted", self)

    async def _release_when_idle(self) -> None:
        """Answer an A-RELEASE-RQ once every operation under way has answered.

        PS3.8 lets the acceptor send its pending responses before the
        A-RELEASE-RP. The wait is each operation's own bound
        (``limits.dimse_timeout``), not ARTIM; past it the association is
        aborted instead of released: an RP would say that all is done.
        """
        tasks = list(self._handler_tasks)
        if tasks:
            bound = self.listener.limits.dimse_timeout or None
            _, pending = await asyncio.wait(tasks, timeout=bound)
            if pending:
                log.warning(
                    "association %d with %s: release requested while %d operations were "
                    "still under way after %s s: aborting",
                    self.number,
                    self.peer,
                    len(pending),
                    bound,
                )
                protocol = self.protocol
                if protocol is not None:
                    protocol.abort()
                return
        protocol = self.protocol
        if protocol is not None:
            protocol.release_response()
        self._ended_by(None)

    def _ended_by(self, error: BaseException | None) -> None:
        if self.counted:
            self.counted = False
            self.listener.association_count -= 1
            self.listener.count(self, -1)
        if self.admitted:
            self.admitted = False
            if self.listener.release is not None:
                self.listener.release(self)
        if not self._reported:
            self._reported = True
            if self.accept is not None:
                self.listener.notify("association_ended", self, error)
        self.end(error or ConnectionClosed("association released"))

    def request_refused(self, incoming: IncomingRequest, status: int) -> None:
        """Tell the listener's observers of a request its own validation refused, so
        that a refused C-STORE is still counted and logged as answered."""
        self.listener.notify("request_refused", self, incoming, status)

    def dataset_sink(self, context_id: int, command: dict[int, Any]) -> DatasetSink | None:
        """Where an incoming dataset goes: the listener's sink factory (e.g. a
        :class:`~dicomnet.services.storage.FolderStorage` file), or memory if none."""
        factory = self.listener.dataset_sink
        if factory is None:
            return None
        return factory(self, context_id, command)


class Listener:
    """A DICOM listener (SCP) with per-service handlers.

    Parameters
    ----------
    ae_title : str
        Our AE title.
    supported_contexts : iterable of SupportedContext
        Abstract syntaxes we accept, with transfer syntaxes in our preference
        order. Verification is always supported.
    require_called_ae_title : bool
        Reject (1, 1, 7) a request whose called AE title is not ours.
    allowed_calling_ae_titles : iterable of str, optional
        Reject (1, 1, 3) any other calling AE title.
    limits : ListenerLimits
        Association cap, PDU size, ARTIM, window.
    accept_any_storage : bool
        Accept every storage SOP class (any valid UID proposed for storage).
    """

    def __init__(
        self,
        ae_title: str = "DICOMNET",
        *,
        supported_contexts: Iterable[SupportedContext] = (),
        require_called_ae_title: bool = False,
        allowed_calling_ae_titles: Iterable[str] | None = None,
        limits: ListenerLimits | None = None,
        timeouts: RequestTimeouts | None = None,
        accept_any_storage: bool = False,
        policy: AcceptorPolicy | None = None,
    ) -> None:
        self.ae_title = ae_title
        self.limits = limits or ListenerLimits()
        self.timeouts = timeouts or self.limits.request_timeouts()
        contexts = list(supported_contexts)
        if not any(c.abstract_syntax == VERIFICATION_SOP_CLASS for c in contexts):
            contexts.insert(0, SupportedContext(VERIFICATION_SOP_CLASS))
        base = policy or AcceptorPolicy(ae_title=ae_title)
        self.policy = replace(
            base,
            ae_title=ae_title,
            require_called_ae_title=require_called_ae_title,
            allowed_calling_ae_titles=(
                frozenset(a.strip() for a in allowed_calling_ae_titles)
                if allowed_calling_ae_titles is not None
                else None
            ),
            supported_contexts=tuple(contexts),
            max_pdu_length=self.limits.max_pdu_length,
            max_operations_performed=self.limits.max_operations_performed,
            max_presentation_contexts=self.limits.max_presentation_contexts,
            accept_any_storage=accept_any_storage or base.accept_any_storage,
        )
        self.handlers: dict[int, Handler] = {}
        self.on_association_request: (
            Callable[[ServerAssociation, AssociateRQ], AssociateRJ | AssociateAC | None] | None
        ) = None
        self.dataset_sink: SinkFactory | None = None
        """The sink factory of incoming datasets (:mod:`dicomnet.net.provider`)."""
        self.move_destinations: dict[str, MoveDestination] = {}
        """C-MOVE destinations by AE title; a C-MOVE to any other answers A801."""
        self.association_count = 0
        self.associations: set[ServerAssociation] = set()
        self.numbers = itertools.count(1)
        self.observers: list[Any] = []
        """Told of every association: ``association_accepted(association)``,
        ``association_rejected(association, rj)`` and
        ``association_ended(association, error)`` (error None on a release),
        and of every request its own validation refused before any handler:
        ``request_refused(association, request, status)``;
        an observer may define any of them (see :mod:`dicomnet.services.store_events`)."""
        self.admit: Callable[[ServerAssociation], bool] | None = None
        """Consulted before accepting, after negotiation: False rejects with
        local-limit-exceeded. With :attr:`release`, a cap shared by processes."""
        self.release: Callable[[ServerAssociation], None] | None = None
        """Called when an association :attr:`admit` let in ends."""
        self.proxy_policy: ProxyPolicy | None = None
        """With a policy, connections may open with a PROXY protocol header from a
        trusted proxy, whose client then is the peer (:mod:`dicomnet.net.proxy`)."""
        self._servers: list[asyncio.Server] = []
        self._ssl: SSLContext | None = None
        self._closing = False
        self._per_ae: collections.Counter[str] = collections.Counter()
        self._per_address: collections.Counter[str] = collections.Counter()

    def over_limit(self, calling_ae_title: str, address: str) -> bool:
        """Whether one more association of this AE title or address passes a cap."""
        limits = self.limits
        per_ae, per_address = (
            limits.max_associations_per_calling_ae,
            limits.max_associations_per_address,
        )
        if per_ae and self._per_ae[calling_ae_title] >= per_ae:
            title = printable(calling_ae_title, quote=True)
            log.info("rejecting %s: %d associations of this AE title", title, per_ae)
            return True
        if per_address and self._per_address[address] >= per_address:
            title = printable(calling_ae_title, quote=True)
            log.info("rejecting %s: %d associations from %s", title, per_address, address)
            return True
        return False

    def count(self, association: ServerAssociation, change: int) -> None:
        """Count an association in (1) or out (-1) of its AE title's and address's caps."""
        for counter, key in (
            (self._per_ae, association.calling_ae_title.strip()),
            (self._per_address, association.peer_host),
        ):
            counter[key] += change
            if counter[key] <= 0:
                del counter[key]

    @property
    def closing(self) -> bool:
        """True once :meth:`close` began: new association requests are rejected."""
        return self._closing

    def notify(self, event: str, *args: Any) -> None:
        """Call ``event`` on every observer that has it; a failing observer is logged."""
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:
                log.exception("listener observer %r failed on %s", observer, event)

    # -- handlers ------------------------------------------------------------------------
    def handle(self, command_field: int, handler: Handler) -> None:
        """Serve requests of one DIMSE command field with ``handler``."""
        self.handlers[int(command_field)] = handler

    def on_c_echo(self, handler: Handler) -> Handler:
        """Decorator: the C-ECHO handler (default: answer Success)."""
        self.handle(CommandField.C_ECHO_RQ, handler)
        return handler

    def on_c_store(self, handler: Handler) -> Handler:
        """Decorator: the C-STORE handler."""
        self.handle(CommandField.C_STORE_RQ, handler)
        return handler

    def support(self, *abstract_syntaxes: str, scp_role: bool = False) -> None:
        """Accept these abstract syntaxes (uncompressed transfer syntaxes) if not yet listed."""
        known = {c.abstract_syntax for c in self.policy.supported_contexts}
        added = tuple(
            SupportedContext(uid, UNCOMPRESSED_TRANSFER_SYNTAXES, scp_role=scp_role)
            for uid in abstract_syntaxes
            if uid not in known
        )
        if added:
            contexts = self.policy.supported_contexts + added
            self.policy = replace(self.policy, supported_contexts=contexts)

    def on_n_service(
        self,
        command_field: int,
        handler: Handler,
        sop_classes: Iterable[str],
        *,
        requestor_scp: bool = False,
    ) -> Handler:
        """Serve one DIMSE-N request type for ``sop_classes`` (accepted as contexts).

        The handler returns a status, ``(status, attributes)`` or a :class:`Reply`
        (with ``fields={"affected_sop_instance_uid": ...}`` when N-CREATE
        assigns the UID). ``requestor_scp`` lets the requestor take the SCP
        role of those classes, as a storage commitment SCP does when it sends
        its N-EVENT-REPORT on an association of its own.
        """
        self.support(*sop_classes, scp_role=requestor_scp)
        self.handle(command_field, handler)
        return handler

    def on_c_find(
        self, handler: Handler, *, models: Iterable[str] = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)
    ) -> Handler:
        """Serve C-FIND with a handler yielding ``(0xFF00, identifier)`` per match.

        ``models`` are the information models to accept (Patient Root and
        Study Root by default; add Modality Worklist for a worklist SCP).
        """
        self.support(*models)
        self.handle(CommandField.C_FIND_RQ, handler)
        return handler

    def on_c_move(
        self,
        select: Selector,
        *,
        models: Iterable[str] = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE),
    ) -> Selector:
        """Serve C-MOVE: ``select(request)`` returns the instances (paths or Datasets).

        The sub-operations go to the AE title's entry in :attr:`move_destinations`.
        """
        self.support(*models)
        handler = c_move_handler(
            select, self.move_destinations.get, calling_ae_title=lambda: self.ae_title
        )
        self.handle(CommandField.C_MOVE_RQ, handler)
        return select

    def on_c_get(
        self,
        select: Selector,
        *,
        models: Iterable[str] = (PATIENT_ROOT_GET, STUDY_ROOT_GET),
    ) -> Selector:
        """Serve C-GET: ``select(request)`` returns the instances to send back.

        Storage classes are accepted with the SCP role for the requestor when
        it asks for it, which is how its C-STORE sub-operations arrive.
        """
        self.support(*models)
        self.policy = replace(self.policy, accept_any_storage=True, storage_scp_role=True)
        self.handle(CommandField.C_GET_RQ, c_get_handler(select))
        return select

    # -- LEADTOOLS members ------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        """Connected clients, the one whose request is being handled included."""
        return len(self.associations)

    def get_client_count(self) -> int:
        """Twin of LEADTOOLS ``DicomNet.GetClientCount``."""
        return self.client_count

    @property
    def port(self) -> int:
        """The bound port (the real one when listening on port 0).

        Raises
        ------
        RuntimeError
            Before :meth:`listen` (or after :meth:`close`): there is no port yet.
        """
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the listener is not listening: call listen() first")
        return int(sockets[0].getsockname()[1])

    @property
    def sockets(self) -> list[socket.socket]:
        return [s for server in self._servers for s in server.sockets]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.sockets]

    async def listen(
        self,
        host_address: str = "",
        host_port: int = 0,
        max_number_of_peers: int = 128,
        ip_type: IPType = IPType.IPV4,
        *,
        ssl: SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Bind and start accepting (LEADTOOLS ``Listen``); see the module docstring.

        ``ssl`` (see :func:`dicomnet.net.tls.server_context`) serves DICOM over TLS;
        each handshake has ``limits.tls_handshake_timeout`` to finish.
        ``reuse_port`` sets SO_REUSEPORT, so that several processes bind the
        same port and the kernel spreads connections among them.
        """
        self._ssl = ssl  # the handshake runs in an AcceptGate, which reports its failures
        loop = asyncio.get_running_loop()
        port = host_port
        for family, address, dual in bind_plan(host_address, IPType(ip_type)):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
                sock.bind((address, port))
            except OSError:
                sock.close()
                await self.close()
                raise
            port = sock.getsockname()[1]  # a second family binds the same port
            server = await loop.create_server(
                self._protocol_factory,
                sock=sock,
                backlog=max_number_of_peers,
            )
            self._servers.append(server)

    def _protocol_factory(self) -> asyncio.BufferedProtocol:
        association = ServerAssociation(self)
        protocol = DicomProtocol(
            ul.Role.ACCEPTOR,
            association,
            ul.ConnectionLimits(
                max_pdu_length=self.limits.max_pdu_length,
                max_dataset_length=self.limits.max_dataset_size,
                max_buffered_dataset_length=self.limits.max_buffered_dataset_size,
            ),
            artim_timeout=self.limits.artim_timeout,
            idle_timeout=self.limits.idle_timeout,
            write_timeout=self.limits.write_timeout,
        )
        association.protocol = protocol
        self.associations.add(association)
        protocol.closed.add_done_callback(lambda _: self._forget(association))
        if self.proxy_policy is not None or self._ssl is not None:
            return AcceptGate(
                protocol,
                self.proxy_policy,
                ssl=self._ssl,
                timeout=self.limits.artim_timeout,
                tls_handshake_timeout=self.limits.tls_handshake_timeout,
                on_refused=lambda address, reason: self.notify("peer_refused", address, reason),
                on_tls_failed=lambda address, reason: self.notify("tls_failed", address, reason),
            )
        return protocol

    def _forget(self, association: ServerAssociation) -> None:
        association._ended_by(ConnectionClosed("connection closed"))
        self.associations.discard(association)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called or the task is cancelled."""
        await asyncio.gather(*(server.serve_forever() for server in self._servers))

    async def close(self, *, timeout: float = 10.0) -> None:
        """Stop accepting, let open associations finish for ``timeout`` s, then abort them."""
        self._closing = True
        for server in self._servers:
            server.close()
        # Only accepted associations have work to finish; a connection that has
        # not (or not successfully) asked for one is closed at once.
        pending = [
            a.finished for a in self.associations if a.accept is not None and not a.finished.done()
        ]
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)
        for association in list(self.associations):
            protocol = association.protocol
            if protocol is not None and protocol.transport is not None:
                if protocol.established:
                    protocol.abort()
                protocol.close(reset=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(timeout=0)
