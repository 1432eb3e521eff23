"""Audit messages to a syslog collector: RFC 5424 over UDP (RFC 5426) or TLS (RFC 5425).

Theory of operation
-------------------
IHE ATNA's Record Audit Event transaction carries each PS3.15 A.5 message
as the MSG of one RFC 5424 syslog message: priority 85 (facility 10,
security/authorization; severity 5, notice), version 1, an RFC 3339
timestamp, our host name, the application name ``dicomnet``, our process
ID, the message ID ``IHE+RFC-3881``, no structured data, then a UTF-8 BOM
and the XML. Over UDP each message is one datagram; over TLS each is
framed by its octet count (``LEN SP MSG``, RFC 5425 4.3).

Delivery must never slow the archive. :meth:`SyslogSender.submit` only
puts the message in a bounded queue and returns at once; one task on the
event loop sends from it. When the queue is full (the collector is gone or
slow) the new message is dropped and counted, never waited for. A TLS
connection that fails is opened again after a pause that doubles up to
30 s, while the queue holds what waits; a message whose write failed is
written again on the next connection. The counts are on
:class:`SyslogSender` and reported to ``on_lost``, which the metrics
(``dicomnet_audit_messages_lost``) listen to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable

__all__ = ["PRIORITY", "SyslogSender", "frame_octet_counted", "syslog_message"]

log = logging.getLogger("dicomnet.services.audit_syslog")

PRIORITY = 10 * 8 + 5
"""Facility 10 (security/authorization), severity 5 (notice)."""
MSGID = "IHE+RFC-3881"
BOM = b"\xef\xbb\xbf"
MAX_UDP_MESSAGE = 65507
"""The largest UDP payload over IPv4; a longer message cannot go over UDP."""


def _header_field(value: str) -> str:
    """A printable, space-free header field of RFC 5424 6.2 ("-" when empty)."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)
    return cleaned or "-"


def syslog_message(
    xml: str,
    *,
    hostname: str,
    app_name: str = "dicomnet",
    procid: str | None = None,
    when: float | None = None,
) -> bytes:
    """One RFC 5424 message carrying an audit message (IHE ITI-20)."""
    moment = time.time() if when is None else when
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    stamp += f".{int(moment % 1 * 1_000_000):06d}Z"
    header = " ".join(
        [
            f"<{PRIORITY}>1",
            stamp,
            _header_field(hostname)[:255],
            _header_field(app_name)[:48],
            _header_field(procid if procid is not None else str(os.getpid()))[:128],
            MSGID,
            "-",
        ]
    )
    return header.encode("ascii") + b" " + BOM + xml.encode("utf-8")


def frame_octet_counted(message: bytes) -> bytes:
    """RFC 5425 4.3: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, sender: SyslogSender) -> None:
        self.sender = sender

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable for an earlier datagram: that message is lost.
        self.sender._lost(1, f"UDP: {exc}")


class SyslogSender:
    """Sends syslog messages from a bounded queue, never blocking the caller.

    Parameters
    ----------
    host, port : str, int
        The collector.
    transport : str
        ``"udp"`` (RFC 5426) or ``"tls"`` (RFC 5425).
    ssl_context : ssl.SSLContext, optional
        For TLS: verifies the collector and may hold our certificate
        (IHE ATNA asks for mutual authentication).
    queue_size : int
        Messages held while the collector is slow or away; past it new
        messages are dropped and counted.
    on_lost : callable, optional
        Called with the number of messages each time some are lost.
    on_sent : callable, optional
        Called after each message handed to the collector's socket.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str = "udp",
        ssl_context: ssl.SSLContext | None = None,
        queue_size: int = 10_000,
        on_lost: Callable[[int], None] | None = None,
        on_sent: Callable[[], None] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if transport not in ("udp", "tls"):
            raise ValueError(f"audit transport {transport!r} is neither udp nor tls")
        self.host, self.port, self.transport = host, port, transport
        self.ssl_context = ssl_context
        if transport == "tls" and ssl_context is None:
            self.ssl_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.on_lost, self.on_sent = on_lost, on_sent
        self.connect_timeout = connect_timeout
        self.sent = 0
        self.lost = 0
        self.connect_failures = 0
        self._pending: bytes | None = None
        """Over TLS, the message taken from the queue and not yet written."""
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    def start(self) -> None:
        """Start the sending task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, message: bytes) -> bool:
        """Queue one framed-or-not syslog message; False (and counted) if dropped."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._lost(1, "queue full")
            return False
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is queued for up to ``timeout`` s, then stop; the rest is lost."""
        task, self._task = self._task, None
        if task is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while (not self.queue.empty() or self._pending is not None) and not task.done():
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        left = self.queue.qsize() + (self._pending is not None)
        self._pending = None
        if left:
            self._lost(left, "closed with messages queued")

    def _lost(self, count: int, why: str) -> None:
        self.lost += count
        self._warn(why)
        if self.on_lost is not None:
            self.on_lost(count)

    def _warn(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # one line per 10 s, not one per message
            self._last_warning = now
            log.warning(
                "audit messages to %s:%d: %s (%d lost so far)", self.host, self.port, why, self.lost
            )

    def _delivered(self) -> None:
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent()

    async def _run(self) -> None:
        if self.transport == "udp":
            await self._run_udp()
        else:
            await self._run_tls()

    async def _run_udp(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), remote_addr=(self.host, self.port), family=family
        )
        try:
            while True:
                message = await self.queue.get()
                try:
                    if len(message) > MAX_UDP_MESSAGE:
                        self._lost(1, f"a message of {len(message)} bytes does not fit UDP")
                    else:
                        transport.sendto(message)
                        self._delivered()
                finally:
                    self.queue.task_done()
        finally:
            transport.close()

    async def _run_tls(self) -> None:
        pause = 1.0
        while True:
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host,
                        self.port,
                        ssl=self.ssl_context,
                        server_hostname=self.host if self.ssl_context else None,
                    ),
                    self.connect_timeout,
                )
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                # What is queued waits (bounded: new messages are dropped when full).
                self.connect_failures += 1
                self._warn(f"cannot connect: {exc!r}")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = 1.0
            try:
                while True:
                    if self._pending is None:
                        self._pending = await self.queue.get()
                        self.queue.task_done()
                    writer.write(frame_octet_counted(self._pending))
                    await writer.drain()
                    self._pending = None
                    self._delivered()
            except (OSError, ssl.SSLError) as exc:
                log.info("audit connection to %s:%d lost: %s", self.host, self.port, exc)
            finally:
                writer.close()
