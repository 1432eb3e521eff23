"""Blocking facade for scripts and notebooks, over the same asyncio core.

One event-loop thread per process runs every association opened here (not a
thread per association); each blocking call submits a coroutine to it and
waits for the result. It works inside Jupyter, whose own loop is left alone.

    with dicomnet.sync.connect("127.0.0.1", 11112) as assoc:
        assoc.echo()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from dicomnet.net import client

__all__ = ["SyncAssociation", "connect", "run"]

T = TypeVar("T")


class _LoopThread:
    """The process's event-loop thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dicomnet-loop", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop


_LOOP_THREAD = _LoopThread()


def run(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the facade's loop thread and wait for its result."""
    future = asyncio.run_coroutine_threadsafe(coroutine, _LOOP_THREAD.loop())
    return future.result(timeout)


class SyncAssociation:
    """Blocking wrapper of :class:`dicomnet.net.client.ClientConnection`."""

    def __init__(self, association: client.ClientConnection) -> None:
        self.association = association

    @property
    def negotiated(self) -> Any:
        return self.association.negotiated

    def echo(self) -> Any:
        """C-ECHO; the final response."""
        return run(self.association.echo())

    def release(self) -> None:
        """A-RELEASE, after outstanding requests are answered."""
        run(self.association.release())

    def abort(self) -> None:
        """A-ABORT at once; outstanding requests fail."""
        run(self.association.abort())

    def __enter__(self) -> SyncAssociation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run(self.association.__aexit__(exc_type, exc, tb))


def connect(host: str, port: int, **options: Any) -> SyncAssociation:
    """Open an association and block until accepted; options as :func:`dicomnet.connect`."""

    async def opening() -> client.ClientConnection:
        return await client.connect(host, port, **options)

    return SyncAssociation(run(opening()))
