"""The PROXY protocol on the listener's accept path: who the peer really is.

Theory of operation
-------------------
Behind a TCP proxy (HAProxy in ``mode tcp``) every connection comes from
the proxy, so per-address caps, access control, logs and audit messages
would all see one address. With ``send-proxy`` / ``send-proxy-v2`` the
proxy opens each connection with a header naming the client
(:mod:`dicomnet.core.proxy_protocol`).

A header is believed only from a trusted proxy (:class:`ProxyPolicy`):
anyone else could name any address. :class:`ProxyGate` is the protocol of a
connection until its first bytes are known:

* from a trusted proxy, a header is read exactly to its last byte; its
  client address and port replace the proxy's as the connection's peer
  name (:attr:`DicomProtocol.peername`), which is where the association's
  peer address, and so every cap, log line and event, comes from. A
  ``LOCAL`` header (the proxy's own health check) keeps the proxy's address.
  A trusted peer that sends no header at all (a C-ECHO health check run on
  the proxy's host) is served as a direct connection: the first byte tells,
  since neither header's first byte is a PDU type.
* from anyone else, the first byte is looked at: a PROXY header is refused,
  logged and reported to the listener's observers (``peer_refused``); any
  other byte is handed on with the connection.

Then the gate gives the transport to the :class:`DicomProtocol`
(``transport.set_protocol``), which sees an ordinary connection: the gate
costs nothing after the first bytes. A connection that sends nothing, or
no complete header, within the ARTIM timeout is closed.

On a TLS listener the gate also puts TLS in place after the header, if
any (asyncio's ``SSLProtocol``, as ``create_server(ssl=...)`` does at
accept), so a failed handshake is seen: it is logged, reported to the
observers (``tls_failed``) and the association it would have carried is
forgotten at once. No byte can be looked at before a handshake, so over TLS
an untrusted peer goes straight to it and a trusted proxy must send its
header.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from asyncio import sslproto
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

from dicomnet.core.proxy_protocol import (
    MAX_V2_LENGTH,
    ProxyHeaderReader,
    ProxyProtocolError,
    looks_like_header,
)
from dicomnet.net.transport import RECHECK_DELAY, RECHECKS, peer_moved

__all__ = ["AcceptGate", "ProxyPolicy"]

log = logging.getLogger("dicomnet.net.proxy")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """Which peers may send a PROXY protocol header.

    Attributes
    ----------
    trusted : tuple of networks
        Addresses of trusted proxies (``10.0.0.5/32``, ``10.1.0.0/16``, ``::1/128``).
    """

    trusted: tuple[Network, ...]

    @classmethod
    def from_strings(cls, entries: Iterable[str]) -> ProxyPolicy:
        """From ``ADDR`` or ``ADDR/PREFIX`` strings; raises ValueError on a bad one."""
        networks = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not ADDR or ADDR/PREFIX") from None
        return cls(tuple(networks))

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (as the socket reports it) is a trusted proxy."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 peer
        return any(address in network for network in self.trusted)


class AcceptGate(asyncio.BufferedProtocol):
    """The protocol of an accepted connection until it is the DICOM protocol's.

    It reads a PROXY header (with a :class:`ProxyPolicy`), then runs the TLS
    handshake (with an ``ssl`` context), then hands the connection over.

    Parameters
    ----------
    inner : asyncio.BufferedProtocol
        The DICOM protocol that gets the connection (it has ``peername``).
    policy : ProxyPolicy, optional
        Trusted proxies; None reads no header.
    ssl : ssl.SSLContext, optional
        Serve TLS after the header (the handshake is this gate's, so that a
        failed one is seen and reported).
    timeout : float
        Seconds the peer has to send its first bytes or its whole header.
    tls_handshake_timeout : float
        Seconds the TLS handshake may take.
    on_refused : callable, optional
        ``on_refused(address, reason)`` for a connection refused here.
    on_tls_failed : callable, optional
        ``on_tls_failed(address, reason)`` for a TLS handshake that failed.
    """

    def __init__(
        self,
        inner: Any,
        policy: ProxyPolicy | None = None,
        *,
        ssl: SSLContext | None = None,
        timeout: float = 30.0,
        tls_handshake_timeout: float = 10.0,
        on_refused: Callable[[str, str], None] | None = None,
        on_tls_failed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.ssl = ssl
        self.timeout = timeout
        self.tls_handshake_timeout = tls_handshake_timeout
        self.on_refused = on_refused
        self.on_tls_failed = on_tls_failed
        self.transport: asyncio.Transport | None = None
        self.peername: Any = None
        self.trusted = False
        self.header: Any = None
        self._reader = ProxyHeaderReader()
        self._buffer = bytearray(MAX_V2_LENGTH if policy is not None else 1)
        self._first = True
        self._handed_over = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peername = transport.get_extra_info("peername")
        policy = self.policy
        self.trusted = bool(self.peername and policy and policy.trusts(str(self.peername[0])))
        if self.ssl is not None and not self.trusted:
            # No byte can be looked at before a TLS handshake: an untrusted
            # peer's PROXY header fails the handshake, and is reported so.
            self._hand_over(None, b"")
            return
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._timed_out)

    def get_buffer(self, sizehint: int) -> memoryview:
        wanted = self._reader.bytes_wanted() if self.trusted else 1
        return memoryview(self._buffer)[: max(wanted, 1)]

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self._buffer[:nbytes])
        first, self._first = self._first, False
        if first and not looks_like_header(data):
            if self.ssl is not None:
                # Over TLS a trusted proxy must send its header: the byte read
                # here would be missing from the handshake.
                self._refuse("no PROXY protocol header from a trusted proxy")
            else:
                self._hand_over(None, data)  # a direct DICOM peer
            return
        if not self.trusted:
            self._refuse("PROXY protocol header from an untrusted address")
            return
        try:
            header = self._reader.feed(data)
        except ProxyProtocolError as exc:
            self._refuse(str(exc))
            return
        if header is not None:
            self.header = header
            self._hand_over(header.source, b"")

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if not self._handed_over:
            self._handed_over = True
            self._closed_before_dicom(exc)

    def _closed_before_dicom(self, exc: BaseException | None) -> None:
        """The DICOM protocol owns the association's bookkeeping: it hears of a
        connection that was lost before it was ever its own (Evt17 in Sta1)."""
        self.inner.connection_lost(exc)

    def _hand_over(self, source: tuple[str, int] | None, leftover: bytes) -> None:
        self._cancel_timer()
        self._handed_over = True
        transport = self.transport
        assert transport is not None
        if source is not None:
            log.debug("connection from %s relayed by %s", _shown(source), _shown(self.peername))
            self.inner.peername = source  # before anything of the DICOM protocol runs
        if self.ssl is not None:
            self._start_tls(transport, source)
            return
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)
        _feed(self.inner, leftover)

    def _start_tls(self, transport: asyncio.Transport, source: Any) -> None:
        """Put TLS between the transport and the DICOM protocol, now, before any
        more byte is read (what ``create_server(ssl=...)`` does at accept); the
        DICOM protocol's ``connection_made`` comes at the handshake's end."""
        assert self.ssl is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        secure = sslproto.SSLProtocol(
            loop,
            self.inner,
            self.ssl,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self.tls_handshake_timeout,  # type: ignore[arg-type]
        )  # (typeshed says int; asyncio takes seconds as a float)
        transport.set_protocol(secure)
        secure.connection_made(transport)
        waiter.add_done_callback(lambda done: self._handshake_done(done, transport, source))

    def _handshake_done(
        self, done: asyncio.Future[None], transport: asyncio.Transport, source: Any
    ) -> None:
        error = None if done.cancelled() else done.exception()
        if error is None and not done.cancelled():
            return
        peer = _shown(source or self.peername)
        if isinstance(error, (ssl.SSLError, ConnectionAbortedError)):
            # A peer that spoke something else, refused a certificate or ran out of time.
            reason = str(error) or type(error).__name__
            log.warning("TLS handshake with %s failed: %s", peer, reason)
            if self.on_tls_failed is not None:
                try:
                    self.on_tls_failed(str((source or self.peername or ("",))[0]), reason)
                except Exception:
                    log.exception("TLS failure observer failed")
        else:  # closed before or during its handshake: a probe, a TCP health check
            log.debug("connection from %s closed during the TLS handshake: %r", peer, error)
        transport.abort()
        self._closed_before_dicom(error)

    def _refuse(self, reason: str) -> None:
        address = str(self.peername[0]) if self.peername else ""
        log.warning("refusing the connection from %s: %s", _shown(self.peername), reason)
        if self.on_refused is not None:
            try:
                self.on_refused(address, reason)
            except Exception:
                log.exception("PROXY refusal observer failed")
        if self.transport is not None:
            self.transport.abort()

    def _timed_out(self, recheck: int = RECHECKS) -> None:
        self._timer = None
        if recheck and not self._handed_over and peer_moved(self.transport):
            # bytes sent in time, read late (the process stalled): read them first
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(RECHECK_DELAY, self._timed_out, recheck - 1)
            return
        if not self._handed_over and self.transport is not None:
            log.info(
                "no %s from %s within %.0f s: closing",
                "PROXY header" if self.trusted and not self._first else "data",
                _shown(self.peername),
                self.timeout,
            )
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _feed(protocol: Any, data: bytes | bytearray) -> None:
    """Give bytes read on a protocol's behalf to a buffered protocol."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        protocol.buffer_updated(count)
        view = view[count:]


def _shown(peername: Any) -> str:
    if not peername:
        return "?"
    host, port = str(peername[0]), peername[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
