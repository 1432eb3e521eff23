"""Blocking facade for scripts and notebooks, over the same asyncio core.

Theory of operation
-------------------
One event-loop thread per process runs every association and listener opened
here (not a thread per association); each blocking call submits a coroutine
to it and waits for the result. It works inside Jupyter, whose own loop is
left alone.

* :func:`connect` returns a :class:`SyncAssociation` with the whole client
  API blocking: ``echo``, ``store`` (a pydicom Dataset, raw bytes or a Part 10
  file), ``find``/``move``/``get`` as plain iterators of responses, the six
  DIMSE-N requests and storage commitment.
* Stopping a ``find``/``move``/``get`` iteration early (``break``, an
  exception, or closing the iterator) sends C-CANCEL-RQ (PS3.7 9.3.2.3) and
  waits for the final Cancel response, so the association stays usable.
  CPython closes an abandoned iterator as soon as nothing refers to it; call
  ``close()`` (or use :func:`contextlib.closing`) to be explicit.
* :class:`Listener` serves from the loop thread with handlers written as
  plain functions, which run in the loop's worker pool so a slow handler never
  stalls the other associations. It is a context manager: listening inside
  the block, closed after it.

::

    with dicomnet.sync.connect("127.0.0.1", 11112, contexts=...) as assoc:
        assoc.store("ct.dcm")
        for response in assoc.find(query, STUDY_ROOT_FIND):
            ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from dicomnet.core.dimse import CommandField
from dicomnet.net import client
from dicomnet.net import listener as _listener
from dicomnet.net.association import Handler, IncomingRequest
from dicomnet.net.operations import NResult, QueryResponse

__all__ = ["Listener", "SyncAssociation", "connect", "plain_handler", "run"]

T = TypeVar("T")


class _LoopThread:
    """The process's event-loop thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dicomnet-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def is_current(self) -> bool:
        return self._thread is threading.current_thread()


_LOOP_THREAD = _LoopThread()


def run(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the facade's loop thread and wait for its result.

    Raises
    ------
    RuntimeError
        Called from the loop thread itself (from an async handler), where
        waiting would deadlock; await the coroutine there instead.
    """
    if _LOOP_THREAD.is_current():
        coroutine.close()
        raise RuntimeError("dicomnet.sync called from its own event loop; await instead")
    future = asyncio.run_coroutine_threadsafe(coroutine, _LOOP_THREAD.loop())
    return future.result(timeout)


def _iterate(responses: AsyncIterator[QueryResponse]) -> Iterator[QueryResponse]:
    """A plain iterator over an async one; closing it early closes the async one,
    which sends C-CANCEL and waits for the final response."""

    async def following() -> QueryResponse:
        return await responses.__anext__()

    finished = False
    try:
        while True:
            try:
                item = run(following())
            except StopAsyncIteration:
                finished = True
                return
            yield item
    finally:
        closer = getattr(responses, "aclose", None)
        if closer is not None and not finished:
            if _LOOP_THREAD.is_current():  # finalized by the garbage collector on the loop
                asyncio.get_running_loop().create_task(closer())
            else:
                run(closer())


class SyncAssociation:
    """Blocking wrapper of :class:`dicomnet.net.client.ClientConnection`.

    Every method takes the same arguments as its asynchronous twin (see
    :mod:`dicomnet.net.operations`), and raises the same errors.
    """

    def __init__(self, association: client.ClientConnection) -> None:
        self.association = association

    @property
    def negotiated(self) -> Any:
        """The agreement (:class:`dicomnet.core.agreement.Negotiated`)."""
        return self.association.negotiated

    @property
    def accept(self) -> Any:
        """The A-ASSOCIATE-AC as received."""
        return self.association.accept

    # -- DIMSE-C -------------------------------------------------------------------------
    def echo(self, **options: Any) -> Any:
        """C-ECHO; the final response."""
        return run(self.association.echo(**options))

    def store(self, source: Any, **options: Any) -> Any:
        """C-STORE of a pydicom Dataset, raw dataset bytes (give ``sop_class_uid``,
        ``sop_instance_uid`` and ``transfer_syntax``) or a Part 10 file path,
        sent unparsed; the final response."""
        return run(self.association.store(source, **options))

    def find(self, identifier: Any, model: str, **options: Any) -> Iterator[QueryResponse]:
        """C-FIND: each response as it arrives, the final one last."""
        return _iterate(self.association.find(identifier, model, **options))

    def move(
        self, identifier: Any, model: str, destination: str, **options: Any
    ) -> Iterator[QueryResponse]:
        """C-MOVE: pending responses with sub-operation counts, then the final one."""
        return _iterate(self.association.move(identifier, model, destination, **options))

    def get(self, identifier: Any, model: str, **options: Any) -> Iterator[QueryResponse]:
        """C-GET: the C-STOREs arrive at the ``handlers`` given to :func:`connect`."""
        return _iterate(self.association.get(identifier, model, **options))

    # -- DIMSE-N and storage commitment ---------------------------------------------------
    def n_event_report(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_event_report(*args, **options))

    def n_get(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_get(*args, **options))

    def n_set(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_set(*args, **options))

    def n_action(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_action(*args, **options))

    def n_create(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_create(*args, **options))

    def n_delete(self, *args: Any, **options: Any) -> NResult:
        return run(self.association.n_delete(*args, **options))

    def request_commitment(self, instances: Iterable[tuple[str, str]], **options: Any) -> Any:
        """Storage Commitment Push Model (PS3.4 J): N-ACTION, then wait for the
        N-EVENT-REPORT on this association; a
        :class:`~dicomnet.services.commitment.CommitmentResult`."""
        from dicomnet.services.commitment import request_commitment

        return run(request_commitment(self.association, list(instances), **options))

    # -- association control ------------------------------------------------------------
    def release(self) -> None:
        run(self.association.release())

    def abort(self) -> None:
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


def plain_handler(function: Callable[[IncomingRequest], Any]) -> Handler:
    """An asynchronous handler running a plain function in the loop's worker pool.

    A generator function (or one returning an iterator) becomes a streaming
    handler: each ``(status, dataset)`` it yields is sent as it comes, and it
    is closed early when the peer cancels. Coroutine functions and async
    generator functions are returned as they are.
    """
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        return function
    if inspect.isgeneratorfunction(function):
        return _streaming(function)

    async def handler(request: IncomingRequest) -> Any:
        return await asyncio.to_thread(function, request)

    return handler


def _streaming(function: Callable[[IncomingRequest], Iterable[Any]]) -> Handler:
    done = object()

    async def handler(request: IncomingRequest) -> AsyncIterator[Any]:
        iterator = iter(await asyncio.to_thread(function, request))
        try:
            while not request.cancelled:
                item = await asyncio.to_thread(next, iterator, done)
                if item is done:
                    return
                yield item
        finally:
            closer = getattr(iterator, "close", None)
            if closer is not None:
                await asyncio.to_thread(closer)

    return handler


def _plain_handlers(handlers: dict[int, Any] | None) -> dict[int, Handler] | None:
    if handlers is None:
        return None
    return {field: plain_handler(function) for field, function in handlers.items()}


def connect(host: str, port: int, **options: Any) -> SyncAssociation:
    """Open an association and block until accepted; options as :func:`dicomnet.connect`.

    ``handlers`` may be plain functions (C-STORE sub-operations of C-GET,
    N-EVENT-REPORT): they run in the loop's worker pool.
    """
    options["handlers"] = _plain_handlers(options.get("handlers"))

    async def opening() -> client.ClientConnection:
        return await client.connect(host, port, **options)

    return SyncAssociation(run(opening()))


class Listener:
    """A listener serving from the facade's loop thread; handlers are plain functions.

    Parameters
    ----------
    ae_title : str
        Our AE title.
    host, port, backlog, ip_type
        Where :meth:`listen` binds, as :meth:`dicomnet.net.listener.Listener.listen`
        (``""`` this machine's address, ``"*"`` every interface, port 0 the
        first free port).
    **options
        The other arguments of :class:`dicomnet.net.listener.Listener`.

    The registration methods mirror the asynchronous listener's and take
    plain functions (see :func:`plain_handler`); :attr:`listener` is the
    asynchronous listener itself, for anything else (``move_destinations``,
    ``observers``, ``dataset_sink``).
    """

    def __init__(
        self,
        ae_title: str = "DICOMNET",
        *,
        host: str = "",
        port: int = 0,
        backlog: int = 128,
        ip_type: _listener.IPType = _listener.IPType.IPV4,
        **options: Any,
    ) -> None:
        self.listener = _listener.Listener(ae_title, **options)
        self._bind = (host, port, backlog, ip_type)
        self._listening = False

    # -- handlers ------------------------------------------------------------------------
    def handle(self, command_field: int, function: Callable[[IncomingRequest], Any]) -> None:
        """Serve requests of one DIMSE command field with a plain function."""
        self.listener.handle(command_field, plain_handler(function))

    def on_c_echo(self, function: Callable[[IncomingRequest], Any]) -> Callable[..., Any]:
        """Decorator: the C-ECHO handler, returning a status."""
        self.handle(CommandField.C_ECHO_RQ, function)
        return function

    def on_c_store(self, function: Callable[[IncomingRequest], Any]) -> Callable[..., Any]:
        """Decorator: the C-STORE handler (``request.dataset`` is the Dataset)."""
        self.listener.on_c_store(plain_handler(function))
        return function

    def on_c_find(
        self, function: Callable[[IncomingRequest], Iterable[Any]], **options: Any
    ) -> Callable[..., Any]:
        """Decorator: C-FIND, a function yielding (or returning) ``(0xFF00, identifier)``
        per match; ``models`` as the asynchronous listener's."""
        self.listener.on_c_find(_streaming(function), **options)
        return function

    def on_c_move(self, select: Callable[[IncomingRequest], Any], **options: Any) -> Any:
        """Decorator: C-MOVE; ``select(request)`` returns the instances to send."""
        self.listener.on_c_move(_in_pool(select), **options)
        return select

    def on_c_get(self, select: Callable[[IncomingRequest], Any], **options: Any) -> Any:
        """Decorator: C-GET; ``select(request)`` returns the instances to send back."""
        self.listener.on_c_get(_in_pool(select), **options)
        return select

    def on_n_service(
        self,
        command_field: int,
        function: Callable[[IncomingRequest], Any],
        sop_classes: Iterable[str],
        **options: Any,
    ) -> Callable[..., Any]:
        """Serve one DIMSE-N request type for ``sop_classes``."""
        self.listener.on_n_service(command_field, plain_handler(function), sop_classes, **options)
        return function

    # -- serving -------------------------------------------------------------------------
    def listen(self, **options: Any) -> Listener:
        """Bind and start serving in the background; returns at once."""
        host, port, backlog, ip_type = self._bind
        run(self.listener.listen(host, port, backlog, ip_type, **options))
        self._listening = True
        return self

    @property
    def port(self) -> int:
        """The bound port (the real one when listening on port 0)."""
        if not self._listening:
            raise RuntimeError("the listener is not listening: call listen() first")
        return self.listener.port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.listener.addresses

    @property
    def client_count(self) -> int:
        return self.listener.client_count

    def serve_forever(self) -> None:
        """Block the calling thread until :meth:`close` (from another thread) or Ctrl-C."""
        if not self._listening:
            self.listen()
        try:
            with contextlib.suppress(asyncio.CancelledError, concurrent.futures.CancelledError):
                run(self.listener.serve_forever())
        except KeyboardInterrupt:
            self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting; open associations get ``timeout`` seconds to finish."""
        if self._listening:
            self._listening = False
            run(self.listener.close(timeout=timeout))

    def __enter__(self) -> Listener:
        if not self._listening:
            self.listen()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_pool(select: Callable[[IncomingRequest], Any]) -> Any:
    if inspect.iscoroutinefunction(select) or inspect.isasyncgenfunction(select):
        return select

    def selected(request: IncomingRequest) -> Any:
        outcome = select(request)
        return list(outcome) if inspect.isgenerator(outcome) else outcome

    async def selecting(request: IncomingRequest) -> Any:
        return await asyncio.to_thread(selected, request)

    return selecting
