"""A raw-socket peer that plays a misbehaving SCU against an SCP under test.

:class:`RawPeer` holds one TCP connection and lets a test send any bytes,
whole, trickled or cut off, and read back what the SCP answers one PDU at a
time. It decodes nothing on its own initiative, so it sees exactly what the
SCP wrote: an A-ABORT with its source and reason, an A-ASSOCIATE-RJ, or the
connection closing. Every wait has a deadline; none can hang a test suite.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Any

from dicomnet.core.codec import decode_command, decode_pdu, parse_pdata
from dicomnet.core.pdu import Abort, AssociateAC, AssociateRJ
from dicomnet.testing import raw

__all__ = ["RawPeer", "ReceivedPDU"]


@dataclass(frozen=True, slots=True)
class ReceivedPDU:
    """One PDU as the peer wrote it: its type and body."""

    pdu_type: int
    body: bytes

    def decoded(self) -> Any:
        """The PDU as a :mod:`dicomnet.core.pdu` value (raises on a malformed one)."""
        return decode_pdu(self.pdu_type, self.body)

    def commands(self) -> list[dict[int, object]]:
        """The command sets of a P-DATA-TF whose command PDVs are each whole."""
        return [
            decode_command(bytes(fragment))
            for _, control, fragment in parse_pdata(self.body)
            if control & 0x01
        ]


class RawPeer:
    """One TCP connection to an SCP, driven byte by byte.

    Use :meth:`connect`, then :meth:`send`, :meth:`trickle`, :meth:`send_partial`
    and :meth:`read_pdu`; :meth:`associate` performs a well-formed negotiation
    first when the hostile part comes later.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float = 5.0) -> RawPeer:
        """Open the connection (TCP_NODELAY on, so each write is its own segment)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def __aenter__(self) -> RawPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Write ``data`` at once; a peer that already closed is not an error."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            pass

    async def trickle(self, data: bytes, *, chunk: int = 1, delay: float = 0.01) -> None:
        """Write ``data`` ``chunk`` bytes at a time, ``delay`` seconds apart (slowloris)."""
        for start in range(0, len(data), chunk):
            if self.writer.is_closing() or self.reader.at_eof():
                return
            await self.send(data[start : start + chunk])
            await asyncio.sleep(delay)

    async def send_partial(self, data: bytes, count: int) -> None:
        """Write the first ``count`` bytes of ``data``, then close: a PDU cut off mid-way."""
        await self.send(data[:count])
        self.close()

    async def associate(
        self,
        contexts: list[bytes] | None = None,
        *,
        called: str = "ANY-SCP",
        calling: str = "TESTING",
        timeout: float = 5.0,
    ) -> AssociateAC:
        """Send a well-formed A-ASSOCIATE-RQ and return the A-ASSOCIATE-AC.

        Raises ``AssertionError`` with what came instead when the answer is
        not an AC, so a test states its expectation in one line.
        """
        await self.send(raw.associate_rq(called, calling, contexts=contexts))
        value = await self._expect(AssociateAC, 0x02, timeout)
        assert isinstance(value, AssociateAC)
        return value

    # -- receiving ----------------------------------------------------------------------
    async def read_pdu(self, timeout: float = 5.0) -> ReceivedPDU | None:
        """The next PDU the SCP wrote, or None when it closed the connection first.

        Raises :class:`TimeoutError` after ``timeout`` seconds of waiting.
        """
        try:
            header = await asyncio.wait_for(self.reader.readexactly(6), timeout)
            pdu_type, _, length = struct.unpack(">BBI", header)
            body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        except asyncio.TimeoutError:
            raise TimeoutError(f"no PDU within {timeout} s") from None
        return ReceivedPDU(pdu_type, body)

    async def read_until_closed(self, timeout: float = 5.0) -> list[ReceivedPDU]:
        """Every PDU until the SCP closes; :class:`TimeoutError` if it does not."""
        received: list[ReceivedPDU] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the connection is still open after {timeout} s")
            pdu = await self.read_pdu(remaining)
            if pdu is None:
                return received
            received.append(pdu)

    async def expect_abort(self, timeout: float = 5.0) -> Abort:
        """Read until the SCP's A-ABORT and return it; then close our side, as a peer does.

        PDUs before it are skipped. Raises ``AssertionError`` when the SCP
        closes without one, :class:`TimeoutError` when nothing comes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped: list[ReceivedPDU] = []
        while True:
            pdu = await self.read_pdu(max(deadline - loop.time(), 0.001))
            if pdu is None:
                raise AssertionError(f"closed without an A-ABORT; received {skipped!r}")
            if pdu.pdu_type == 0x07:
                self.close()
                value = pdu.decoded()
                assert isinstance(value, Abort)
                return value
            skipped.append(pdu)

    async def expect_reject(self, timeout: float = 5.0) -> AssociateRJ:
        """Read the answer to a request and return it as an A-ASSOCIATE-RJ."""
        value = await self._expect(AssociateRJ, 0x03, timeout)
        assert isinstance(value, AssociateRJ)
        return value

    async def _expect(self, kind: type, pdu_type: int, timeout: float) -> Any:
        """The next PDU decoded, when it is of ``pdu_type``; else AssertionError naming it."""
        answer = await self.read_pdu(timeout)
        if answer is None or answer.pdu_type != pdu_type:
            raise AssertionError(f"expected an {kind.__name__}, got {answer!r}")
        return answer.decoded()

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the SCP closes the connection within ``timeout``; unread data is dropped."""
        try:
            await self.read_until_closed(timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Close our side (a FIN, not an A-ABORT)."""
        if not self.writer.is_closing():
            self.writer.close()

    def reset(self) -> None:
        """Drop the connection with a TCP RST: the peer vanishing without a word."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport = self.writer.transport
        transport.abort()
