"""What both ends of an established association share.

Theory of operation
-------------------
Once A-ASSOCIATE has succeeded, the two ends are symmetric at the DIMSE level:
either may send requests (a C-GET SCP sends C-STORE sub-operations to the SCU;
a storage commitment SCP sends N-EVENT-REPORT) and either may receive them.
:class:`Association` therefore holds

* the **request queue** of the fo-dicom client connection: requests are
  enqueued with :meth:`Association.send_request`, up to the negotiated number
  of operations invoked are outstanding at once, responses are matched by
  message ID, and every request is completed exactly once (a final response,
  a timeout, or the end of the association);
* the **handler dispatch**: each incoming request runs as its own task, up to
  the negotiated number of operations performed at once, and is answered on
  its own message ID; an exception in a handler answers a failure status and
  never reaches the event loop;
* the **send lock**: PS3.8 Annex E forbids interleaving the fragments of two
  messages, so one message is written completely before the next starts.

The requestor (:mod:`dicomnet.net.client`) and the acceptor (:mod:`dicomnet.net.listener`)
add association set-up and release on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dicomnet.core import dimse
from dicomnet.core.codec import encode_command
from dicomnet.core.negotiation import Negotiated
from dicomnet.core.status import (
    CANCEL,
    CANNOT_UNDERSTAND,
    NO_SUCH_SOP_INSTANCE,
    SUCCESS,
    StatusClass,
    status_class,
)
from dicomnet.errors import (
    AssociationAborted,
    CommandSetError,
    ConnectionClosed,
    DicomNetError,
    LocalProtocolError,
    ProtocolError,
    RequestTimeout,
)
from dicomnet.net.operations import ServiceUser
from dicomnet.net.pdu_log import log_message
from dicomnet.net.provider import DatasetSink, SinkFactory
from dicomnet.net.requests import OutgoingRequest, RequestTimeouts
from dicomnet.net.transport import DicomProtocol

__all__ = [
    "Association",
    "Handler",
    "IncomingRequest",
    "Reply",
    "as_reply",
]

log = logging.getLogger("dicomnet.net.association")


@dataclass(slots=True)
class IncomingRequest:
    """A request the peer sent us, as a handler sees it.

    Attributes
    ----------
    association : Association
        The association it arrived on.
    context_id : int
        Its presentation context.
    message : dimse message
        The decoded command.
    raw_dataset : bytes-like | object | None
        The dataset as received: the bytes in memory, the sink a
        ``dataset_sink`` hook returned, or None.
    """

    association: Association
    context_id: int
    message: Any
    raw_dataset: Any = None
    cancelled: bool = False
    """Set when the peer sent C-CANCEL-RQ for this request (PS3.7 9.3.2.3)."""
    _dataset: Any = field(default=None, repr=False)

    @property
    def transfer_syntax(self) -> str:
        return self.association.negotiated.contexts[self.context_id].transfer_syntax

    @property
    def abstract_syntax(self) -> str:
        return self.association.negotiated.contexts[self.context_id].abstract_syntax

    @property
    def dataset(self) -> Any:
        """The dataset as a pydicom Dataset, parsed on first access only."""
        if self._dataset is None and self.raw_dataset is not None:
            from dicomnet.dataset.encoding import decode_dataset

            self._dataset = decode_dataset(bytes(self.raw_dataset), self.transfer_syntax)
        return self._dataset


@dataclass(frozen=True, slots=True)
class Reply:
    """One response a handler gives: a status, an optional dataset, extra fields.

    ``fields`` are response fields by their :mod:`dicomnet.core.dimse` names, e.g.
    ``number_of_remaining_suboperations`` for C-MOVE and C-GET, or
    ``error_comment``.
    """

    status: int
    dataset: Any = None
    fields: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[IncomingRequest], Awaitable[Any] | AsyncIterator[Any]]
"""A request handler: returns a status, ``(status, dataset)`` or a response; or
yields ``(status, dataset)`` pairs for services with pending responses."""


def as_reply(outcome: Any) -> Reply:
    """What a handler returned or yielded, as a :class:`Reply`.

    Accepted: a :class:`Reply`; a status int; ``(status, dataset)``;
    ``(status, dataset, fields)``; None for Success.
    """
    if isinstance(outcome, Reply):
        return outcome
    if outcome is None:
        return Reply(SUCCESS)
    if isinstance(outcome, int):
        return Reply(outcome)
    if isinstance(outcome, tuple) and 1 <= len(outcome) <= 3:
        return Reply(int(outcome[0]), *outcome[1:])
    raise TypeError(f"a handler returned {type(outcome).__name__}; expected a status or a Reply")


def _discard_unclaimed(dataset: DatasetSink | bytes | bytearray | memoryview | None) -> None:
    """Delete what a sink holds when no handler took responsibility for it."""
    if dataset is None or isinstance(dataset, (bytes, bytearray, memoryview)):
        return
    if not dataset.committing:
        dataset.discard()


class _SendWatch:
    """Cancels a send when no byte has been taken for ``stall`` seconds, or the
    whole message has taken ``total`` (see :meth:`Association._send_with_timeout`)."""

    def __init__(
        self, association: Association, task: asyncio.Task[Any], stall: float | None,
        total: float | None,
    ) -> None:  # fmt: skip
        self.association = association
        self.task = task
        self.stall, self.total = stall, total
        self.fired: tuple[str, float] | None = None
        self.loop = asyncio.get_running_loop()
        self.started = self.progressed = self.loop.time()
        self.accepted = association._bytes_accepted()
        limits = [seconds for seconds in (stall, total) if seconds is not None]
        self.interval = min(max(min(limits) / 4, 0.01), 0.25)
        self.handle: asyncio.TimerHandle | None = self.loop.call_later(self.interval, self.check)

    def check(self) -> None:
        now = self.loop.time()
        accepted = self.association._bytes_accepted()
        if accepted != self.accepted:
            self.accepted, self.progressed = accepted, now
        if self.stall is not None and now - self.progressed >= self.stall:
            self.fired = ("send", self.stall)
        elif self.total is not None and now - self.started >= self.total:
            self.fired = ("send_total", self.total)
        if self.fired is not None:
            self.handle = None
            self.task.cancel()  # releases the send lock; the PDUs written stay whole
        else:
            self.handle = self.loop.call_later(self.interval, self.check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Association(ServiceUser):
    """DIMSE over one established association (either end).

    Parameters
    ----------
    handlers : dict
        Request handlers by request :class:`dicomnet.core.dimse.CommandField`.
    timeouts : RequestTimeouts
        Defaults for requests sent on this association.
    """

    def __init__(
        self,
        *,
        handlers: dict[int, Handler] | None = None,
        timeouts: RequestTimeouts | None = None,
    ) -> None:
        self.handlers: dict[int, Handler] = dict(handlers or {})
        self.timeouts = timeouts or RequestTimeouts()
        self.sink_factory: SinkFactory | None = None
        """``factory(association, context_id, command)``: where incoming datasets
        go (e.g. :meth:`dicomnet.services.storage.FolderStorage.sink`); None keeps
        them in memory."""
        self.protocol: DicomProtocol | None = None
        self.negotiated: Negotiated = None  # type: ignore[assignment]
        self.can_still_process_pdata_tf = True
        self._send_lock = asyncio.Lock()
        self._queue: deque[OutgoingRequest] = deque()
        self._outstanding: dict[int, OutgoingRequest] = {}
        self._message_ids = dimse.MessageIDs()
        self._send_task: asyncio.Task[None] | None = None
        self._sending_now = False
        self._handler_tasks: dict[asyncio.Task[None], IncomingRequest] = {}
        self._requests_open = 0
        """Peer requests not yet answered: the window counts these, not the tasks,
        whose completion callbacks run after the response is already out."""
        self._ended: BaseException | None = None
        self.established = asyncio.get_running_loop().create_future()
        self.finished = asyncio.get_running_loop().create_future()

    # -- the request queue (fo-dicom IDicomClientConnection) -----------------------
    @property
    def is_send_queue_empty(self) -> bool:
        """True when every request is sent and handled (fo-dicom ``IsSendQueueEmpty``)."""
        return not self._queue and not self._outstanding

    @property
    def is_send_next_message_required(self) -> bool:
        """True when requests wait and no send loop runs (``IsSendNextMessageRequired``)."""
        return bool(self._queue) and (self._send_task is None or self._send_task.done())

    @property
    def max_outstanding(self) -> int:
        """How many of our requests may be outstanding at once (0 = unlimited)."""
        return self.negotiated.max_operations_invoked if self.negotiated else 1

    def send_request(self, request: OutgoingRequest) -> OutgoingRequest:
        """Enqueue a request and start sending if the window allows (``SendRequest``)."""
        if self._ended is not None:
            raise ConnectionClosed("the association has ended")
        if not self.can_still_process_pdata_tf:
            raise LocalProtocolError("a P-DATA-TF send timed out; only release or abort remain")
        self._queue.append(request)
        total = (request.timeouts or self.timeouts).total
        if total is not None:
            loop = asyncio.get_running_loop()
            request._total_timer = loop.call_later(total, self._timed_out, request, "total", total)
        self.send_next_message()
        return request

    def send_next_message(self) -> None:
        """Send what the window allows if requests wait and no send runs (``SendNextMessage``).

        Requests whose PDUs go out in one write are sent here and now, all of
        them in one gathered write, with no task; the send loop task takes
        over from the first request that may have to wait for the socket (a
        dataset larger than :data:`~dicomnet.net.transport.SEND_BATCH_BYTES`)
        or when another message holds the send lock.
        """
        if self._sending_now or not self.is_send_next_message_required:
            return
        if self.negotiated is None:
            return
        if not self._send_lock.locked() and self._send_ready():
            return
        self._send_task = asyncio.get_running_loop().create_task(self._send_loop())

    def _send_ready(self) -> bool:
        """Send queued requests that need no wait; False when one must wait (a task's job).

        The caller has checked that no send task runs and the send lock is
        free; nothing here yields, so no other message can interleave
        (PS3.8 Annex E). The write waits for the end of this loop turn
        (:meth:`DicomProtocol.flush_soon`), so the requests a sender enqueues
        one after the other, or as several responses arrive in one read, go
        out together in one system call.
        """
        protocol = self.protocol
        if protocol is None:
            return False  # the send loop fails each request with the reason
        queue = self._queue
        self._sending_now = True
        try:
            while queue and self._window_open() and self._ended is None:
                request = queue[0]
                if request.completed.done():  # timed out, or its caller cancelled, while queued
                    queue.popleft()
                    request._finished = True
                    continue
                if not protocol.fits_one_write(request.dataset):
                    return False
                queue.popleft()
                self._send_now(protocol, request)
            return True
        finally:
            self._sending_now = False
            protocol.flush_soon()

    def _send_now(self, protocol: DicomProtocol, request: OutgoingRequest) -> None:
        """Queue one request's PDUs in the connection (no wait, no send timers to run:
        they watch only a send that waits for the socket)."""
        timeouts = self._take_message_id(request)
        try:
            if not self.can_still_process_pdata_tf:
                raise LocalProtocolError("a P-DATA-TF send timed out; only release or abort remain")
            context_id = request.context_id or self._context_for(request)
            command = encode_command(dimse.to_command(request.message))
            log_message("sent to", context_id, request.message, request.dataset, protocol.peername)
            protocol.queue_message(
                context_id, command, request.dataset, self.negotiated.peer_max_pdu_length
            )
        except Exception as exc:
            self._finish(request, exc)
            return
        self._sent(request, timeouts)

    def _take_message_id(self, request: OutgoingRequest) -> RequestTimeouts:
        """Number the request and count it outstanding; the timeouts that apply to it."""
        message_id = self._message_ids.allocate()
        request.message = replace(request.message, message_id=message_id)
        self._outstanding[message_id] = request
        return request.timeouts or self.timeouts

    def _sent(self, request: OutgoingRequest, timeouts: RequestTimeouts) -> None:
        """The request's last PDU left: tell the hook and start waiting for its response."""
        self.on_request_sent(request)
        if timeouts.first_response is not None and not request.completed.done():
            self._arm(request, "first_response", timeouts.first_response)

    def _window_open(self) -> bool:
        limit = self.max_outstanding
        return limit == 0 or len(self._outstanding) < limit

    async def _send_loop(self) -> None:
        """Send every queued request the window allows, then write them together.

        A message that needs no wait for the socket is only queued in the
        connection, so every request ready in this loop turn (a pipelining
        sender refilling its window as several responses arrive at once)
        leaves in one gathered write, one system call.
        """
        try:
            await self._send_queued()
        finally:
            protocol = self.protocol
            if protocol is not None:
                protocol.flush_soon()

    async def _send_queued(self) -> None:
        while self._queue and self._window_open() and self._ended is None:
            request = self._queue.popleft()
            if request.completed.done():  # timed out, or its caller cancelled, while queued
                request._finished = True
                continue
            timeouts = self._take_message_id(request)
            try:
                await self._send_with_timeout(
                    request,
                    request.context_id or self._context_for(request),
                    timeouts,
                )
            except Exception as exc:  # a send timeout too: the request fails with it
                self._finish(request, exc)
                continue
            self._sent(request, timeouts)

    def _context_for(self, request: OutgoingRequest) -> int:
        abstract = getattr(request.message, "affected_sop_class_uid", None) or getattr(
            request.message, "requested_sop_class_uid", None
        )
        for context_id, context in self.negotiated.contexts.items():
            if context.abstract_syntax == abstract:
                return context_id
        raise LocalProtocolError(f"no accepted presentation context for {abstract}")

    async def _send_with_timeout(
        self, request: OutgoingRequest, context_id: int, timeouts: RequestTimeouts
    ) -> None:
        """Send a request under its send timers: ``send``, a stall timer (no byte
        taken by the socket for that long), and ``send_total``, a limit on the
        whole message. Either fires ``on_request_timed_out`` and leaves the
        association able to carry only control PDUs.

        A watchdog on the loop's clock looks at the socket's progress now and
        then and cancels the send when a timer is due; a message that goes out
        at once costs one timer handle, no task.
        """
        stall, total = timeouts.send, timeouts.send_total
        if stall is None and total is None:
            await self.send_message(context_id, request.message, request.dataset, flush=False)
            return
        task = asyncio.current_task()
        assert task is not None
        watch = _SendWatch(self, task, stall, total)
        try:
            await self.send_message(context_id, request.message, request.dataset, flush=False)
        except asyncio.CancelledError:
            if watch.fired is None:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None and uncancel() > 0:
                raise  # cancelled from outside as well: that wins
        finally:
            watch.stop()
        if watch.fired is None:
            return
        timer, seconds = watch.fired
        self.can_still_process_pdata_tf = False
        self.on_request_timed_out(request, seconds)
        raise RequestTimeout(timer, seconds, "P-DATA-TF send made no progress")

    def _bytes_accepted(self) -> int:
        protocol = self.protocol
        return protocol.bytes_accepted if protocol is not None else 0

    async def send_message(
        self, context_id: int, message: Any, dataset: Any = None, *, flush: bool = True
    ) -> None:
        """Send one DIMSE message whole, under the send lock.

        ``flush=False`` leaves its last PDUs queued for the caller's
        :meth:`DicomProtocol.flush`, to be gathered with the next messages'.
        """
        protocol = self.protocol
        if protocol is None or self._ended is not None:
            raise ConnectionClosed("the association has ended")
        if not self.can_still_process_pdata_tf:
            raise LocalProtocolError("a P-DATA-TF send timed out; only release or abort remain")
        command = encode_command(dimse.to_command(message))
        async with self._send_lock:
            log_message("sent to", context_id, message, dataset, protocol.peername)
            await protocol.send_message(
                context_id, command, dataset, self.negotiated.peer_max_pdu_length, flush=flush
            )

    def _arm(self, request: OutgoingRequest, timer: str, seconds: float) -> None:
        if request._timer is not None:
            request._timer.cancel()
        loop = asyncio.get_running_loop()
        request._timer = loop.call_later(seconds, self._timed_out, request, timer, seconds)

    def _timed_out(self, request: OutgoingRequest, timer: str, seconds: float) -> None:
        if request._finished:
            return
        self.on_request_timed_out(request, seconds)
        self._finish(request, RequestTimeout(timer, seconds, type(request.message).__name__))

    def _finish(self, request: OutgoingRequest, outcome: Any) -> None:
        """Complete a request exactly once, with a final response or an error.

        A caller cancelled while awaiting :attr:`OutgoingRequest.completed`
        cancels that future, not the request: once sent, it holds its place
        in the window until its final response (or timeout) arrives here.
        """
        if request._finished:
            return
        request._finished = True
        for handle in (request._timer, request._total_timer):
            if handle is not None:
                handle.cancel()
        if isinstance(request.message, tuple):  # pragma: no cover - defensive
            return
        message_id = getattr(request.message, "message_id", None)
        if message_id is not None and self._outstanding.get(message_id) is request:
            del self._outstanding[message_id]
            self._message_ids.release(message_id)
        if request.completed.done():
            pass  # cancelled by its caller: nobody waits for the outcome
        elif isinstance(outcome, BaseException):
            request.completed.set_exception(outcome)
            request.completed.exception()  # mark retrieved; callers may never await it
        else:
            request.completed.set_result(outcome)
        request._updates.put_nowait(None)
        self.send_next_message()

    # -- callbacks (fo-dicom names, snake_case); subclasses or users override ---------
    def on_request_sent(self, request: OutgoingRequest) -> None:
        """The request's last PDU was handed to the transport."""

    def on_request_pending(self, request: OutgoingRequest, response: Any) -> None:
        """A pending response arrived (``OnRequestPendingAsync``)."""

    def on_request_completed(self, request: OutgoingRequest, response: Any) -> None:
        """The final response arrived; called once per request (``OnRequestCompletedAsync``)."""

    def on_request_timed_out(self, request: OutgoingRequest, timeout: float) -> None:
        """A timer of the request's timeout model fired (``OnRequestTimedOutAsync``)."""

    # -- receiving --------------------------------------------------------------------
    def message_received(self, context_id: int, command: dict[int, Any], dataset: Any) -> None:
        """Route a complete message: a response to its request, a request to a handler."""
        try:
            message = dimse.message_from_command(command)
        except CommandSetError as exc:
            self.protocol_error(exc)
            self._abort_for(exc)
            return
        if self.protocol is not None:
            log_message("received from", context_id, message, dataset, self.protocol.peername)
        if dimse.is_response(message):
            self._response_received(message, dataset)
        else:
            self._request_received(context_id, message, dataset)

    def _response_received(self, response: Any, dataset: Any) -> None:
        request = self._outstanding.get(response.message_id_being_responded_to)
        if request is None:
            log.warning(
                "response to unknown message ID %s ignored", response.message_id_being_responded_to
            )
            return
        request.responses.append((response, dataset))
        request._updates.put_nowait((response, dataset))
        if status_class(response.status) is StatusClass.PENDING:
            self.on_request_pending(request, response)
            between = (request.timeouts or self.timeouts).between_responses
            if between is not None:
                self._arm(request, "between_responses", between)
            elif request._timer is not None:
                request._timer.cancel()
            return
        self.on_request_completed(request, response)
        self._finish(request, response)

    def _request_received(self, context_id: int, message: Any, dataset: Any) -> None:
        if isinstance(message, dimse.CCancelRQ):
            # No response to C-CANCEL; the request it names answers Cancel (FE00).
            for incoming in self._handler_tasks.values():
                if incoming.message.message_id == message.message_id_being_responded_to:
                    incoming.cancelled = True
            return
        if context_id not in self.negotiated.contexts:
            self._abort_for(ProtocolError(f"request on unknown presentation context {context_id}"))
            return
        performed = self.negotiated.max_operations_performed
        if performed and self._requests_open >= performed:
            self._abort_for(
                ProtocolError(f"peer exceeded the negotiated window of {performed} operations")
            )
            return
        incoming = IncomingRequest(self, context_id, message, dataset)
        self._requests_open += 1
        task = asyncio.get_running_loop().create_task(self._run_handler(incoming))
        self._handler_tasks[task] = incoming
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        incoming = self._handler_tasks.pop(task, None)
        if task.cancelled() and incoming is not None:
            _discard_unclaimed(incoming.raw_dataset)

    def busy(self) -> bool:
        """Whether a request of this association is being served (not idle)."""
        return bool(self._handler_tasks)

    def dataset_sink(self, context_id: int, command: dict[int, Any]) -> DatasetSink | None:
        """Where an incoming request's dataset goes; None collects it in memory."""
        if self.sink_factory is None:
            return None
        return self.sink_factory(self, context_id, command)

    async def _run_handler(self, incoming: IncomingRequest) -> None:
        try:
            await self._serve(incoming)
        finally:
            self._requests_open -= 1

    async def _serve(self, incoming: IncomingRequest) -> None:
        message = incoming.message
        try:
            problem = dimse.validate_request(message, incoming.abstract_syntax)
            handler = self.handlers.get(int(message.command_field))
            if problem is not None:
                log.info(
                    "refusing %s (message %s) with status %04X",
                    type(message).__name__,
                    getattr(message, "message_id", "?"),
                    problem,
                )
                self.request_refused(incoming, problem)
                await self._respond(incoming, Reply(problem))
            elif handler is None:
                await self._respond(incoming, Reply(self.unhandled_status(message)))
            else:
                await self._dispatch(handler, incoming)
        except (ConnectionClosed, AssociationAborted):
            pass
        except DicomNetError as exc:
            log.info("request %s not answered: %s", type(message).__name__, exc)

    def request_refused(self, incoming: IncomingRequest, status: int) -> None:
        """A request answered ``status`` by its own validation, before any handler ran;
        the listener tells its observers (a refused C-STORE is still a C-STORE answered)."""

    def unhandled_status(self, message: Any) -> int:
        """The status answered to a request that no handler serves."""
        return (
            SUCCESS
            if isinstance(message, dimse.CEchoRQ)
            else NO_SUCH_SOP_INSTANCE
            if dimse.is_n_service(message)
            else CANNOT_UNDERSTAND
        )

    async def _dispatch(self, handler: Handler, incoming: IncomingRequest) -> None:
        """Run a handler and send what it returns or yields, each on the request's ID."""
        message = incoming.message
        try:
            result = handler(incoming)
            if hasattr(result, "__aiter__"):
                await self._stream_replies(incoming, result)
                return
            outcome = await result
        except (ConnectionClosed, AssociationAborted, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("handler for %s failed", type(message).__name__)
            await self._respond(incoming, Reply(dimse.failure_status_for(message)))
            return
        await self._respond(incoming, as_reply(outcome))

    async def _stream_replies(self, incoming: IncomingRequest, replies: Any) -> None:
        """Send pending replies as they come; stop at the final one or on C-CANCEL."""
        last = Reply(SUCCESS)
        try:
            async for item in replies:
                reply = as_reply(item)
                if incoming.cancelled and status_class(reply.status) is StatusClass.PENDING:
                    fields = {k: v for k, v in reply.fields.items() if "suboperations" in k}
                    await self._respond(incoming, Reply(CANCEL, None, fields))
                    return
                await self._respond(incoming, reply)
                if status_class(reply.status) is not StatusClass.PENDING:
                    return
                last = reply
        except (ConnectionClosed, AssociationAborted, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("handler for %s failed", type(incoming.message).__name__)
            await self._respond(incoming, Reply(dimse.failure_status_for(incoming.message)))
            return
        finally:
            closer = getattr(replies, "aclose", None)
            if closer is not None:
                await closer()
        # The generator ended after pending replies only: the final one is Success.
        final_fields = {k: v for k, v in last.fields.items() if "suboperations" in k}
        if incoming.cancelled:
            await self._respond(incoming, Reply(CANCEL, None, final_fields))
        else:
            await self._respond(incoming, Reply(SUCCESS, None, final_fields))

    async def _respond(self, incoming: IncomingRequest, reply: Reply) -> None:
        from dicomnet.dataset.encoding import encode_dataset

        payload = reply.dataset
        if payload is not None and not isinstance(payload, (bytes, bytearray, memoryview)):
            payload = encode_dataset(payload, incoming.transfer_syntax)
        response = dimse.response_for(
            incoming.message, int(reply.status), has_dataset=payload is not None, **reply.fields
        )
        await self.send_message(incoming.context_id, response, payload)

    # -- endings ----------------------------------------------------------------------
    def protocol_error(self, exc: Exception) -> None:
        """The peer broke the protocol; the transport aborts the association (and logs it)."""

    def _abort_for(self, exc: ProtocolError) -> None:
        if self.protocol is not None:
            self.protocol.abort_invalid(exc)

    def end(self, error: BaseException) -> None:
        """The association is over: fail every request still queued or outstanding."""
        if self._ended is not None:
            return
        self._ended = error
        for request in list(self._outstanding.values()) + list(self._queue):
            self._finish(request, error)
        self._queue.clear()
        for task in list(self._handler_tasks):
            task.cancel()
        if self._send_task is not None and not self._send_task.done():
            self._send_task.cancel()
        if not self.finished.done():
            self.finished.set_result(error)
