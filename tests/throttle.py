"""A TCP proxy that reads from the client at a fixed rate, or not at all for a while.

It stands in front of a real peer (DCMTK storescp, a dicomnet listener) and
turns it into a slow reader: the client's sends meet back-pressure exactly as
they would over a slow link. Receive buffers are kept small so that the
back-pressure reaches the client within a few hundred kilobytes.
"""

from __future__ import annotations

import asyncio
import socket
import time

__all__ = ["ThrottlingProxy"]

CHUNK = 64 * 1024


class ThrottlingProxy:
    """``async with ThrottlingProxy(port, rate=5e6) as proxy:`` then connect to ``proxy.port``.

    Attributes
    ----------
    rate : float
        Bytes per second read from the client (the answers flow back unthrottled).
    stalled_until : float
        ``time.monotonic()`` before which nothing is read from the client.
    forwarded : int
        Bytes forwarded from clients so far.
    """

    def __init__(self, upstream_port: int, *, rate: float = 5e6) -> None:
        self.upstream_port = upstream_port
        self.rate = rate
        self.stalled_until = 0.0
        self.forwarded = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def stall(self, seconds: float) -> None:
        """Stop reading from clients for ``seconds`` from now."""
        self.stalled_until = time.monotonic() + seconds

    async def __aenter__(self) -> ThrottlingProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)  # inherited when accepted
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = sock.getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            back = asyncio.ensure_future(self._pipe(up_reader, writer, throttled=False))
            try:
                await self._pipe(reader, up_writer, throttled=True)
            finally:
                await asyncio.wait([back], timeout=5)
                back.cancel()
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, throttled: bool
    ) -> None:
        while True:
            if throttled:
                wait = self.stalled_until - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            data = await reader.read(CHUNK if throttled else 1 << 20)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            if throttled:
                self.forwarded += len(data)
                await asyncio.sleep(len(data) / self.rate)
