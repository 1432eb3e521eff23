"""An SCP that misbehaves on request, to test SCUs (ours or a user's) against.

:class:`MisbehavingSCP` accepts any association, then answers every DIMSE
request the way its :class:`Behaviour` says: late, never, with a flood of
pending responses, in odd PDV splits, with PDU lengths that lie, cut off in
the middle of a PDU, or ignoring the release request and never closing. It
answers from the request alone (the response's fields mirror the request's,
a pending C-FIND response carries the request's identifier back), so it
needs no storage and no configuration beyond the behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

from dicomnet.core.codec import Assembler, decode_pdu, encode_command, encode_pdu
from dicomnet.core.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PresentationContextAC,
    UserInformation,
)
from dicomnet.errors import ProtocolError
from dicomnet.testing import raw

__all__ = ["Behaviour", "MisbehavingSCP"]

_PENDING_CAPABLE = {0x0020, 0x0010, 0x0021}  # C-FIND, C-GET, C-MOVE


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How a :class:`MisbehavingSCP` answers; the defaults behave well.

    Attributes
    ----------
    reject : AssociateRJ or None
        Answer every association request with this rejection.
    delay : float
        Seconds to wait before each response.
    never_respond : bool
        Read requests and answer none of them.
    status : int
        Status of the final response.
    pending : int
        Pending responses (FF00) before the final one, for C-FIND, C-GET and
        C-MOVE requests: a flood when large.
    pdv_size : int or None
        Split every fragment of a response into PDVs of this many bytes (an
        odd size breaks PS3.8 E.1 on purpose).
    pdv_per_pdu : bool
        Send each PDV in its own P-DATA-TF rather than all in one.
    length_error : int
        Added to the declared length of every P-DATA-TF sent (a length that lies).
    cut_after : int or None
        Close the connection after this many bytes of the first response:
        an association that ends in the middle of a PDU.
    abort_after_requests : int or None
        Send an A-ABORT instead of answering the request after this many.
    never_close : bool
        Ignore A-RELEASE-RQ and A-ABORT and keep the connection open.
    vanish_after : int or None
        Drop the connection (TCP reset, no A-ABORT) once this many bytes of
        P-DATA-TF have been received: the peer vanishing mid-dataset.
    answer_with : bytes or None
        Send these bytes in place of the A-ASSOCIATE-AC (a malformed one, an
        unknown PDU...), then go on as if the association were accepted.
    respond_with : bytes or None
        Send these bytes in place of every response.
    """

    reject: AssociateRJ | None = None
    delay: float = 0.0
    never_respond: bool = False
    status: int = 0x0000
    pending: int = 0
    pdv_size: int | None = None
    pdv_per_pdu: bool = False
    length_error: int = 0
    cut_after: int | None = None
    abort_after_requests: int | None = None
    never_close: bool = False
    vanish_after: int | None = None
    answer_with: bytes | None = None
    respond_with: bytes | None = None


@dataclass
class _Session:
    """What one connection of the SCP knows: its contexts and requests so far."""

    contexts: dict[int, str] = field(default_factory=dict)
    requests: int = 0
    sent: int = 0
    received: int = 0


class MisbehavingSCP:
    """An asyncio SCP on loopback playing a :class:`Behaviour`.

    ``async with MisbehavingSCP(Behaviour(delay=5)) as scp:`` listens on a free
    port of 127.0.0.1 (:attr:`port`); :attr:`requests` lists every request
    command set received, and :attr:`connections` counts connections.
    """

    def __init__(self, behaviour: Behaviour | None = None, *, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour or Behaviour()
        self.host = host
        self.port = 0
        self.requests: list[dict[int, object]] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MisbehavingSCP:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and drop every connection, never-closing ones included."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The conversation runs in a task of its own, so that close() cancels it
        # without cancelling the task asyncio's server wraps around this one.
        conversation = asyncio.create_task(self._converse(reader, writer, _Session()))
        self._tasks.add(conversation)
        self.connections += 1
        try:
            await conversation
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            pass
        except asyncio.CancelledError:
            if not conversation.cancelled():
                raise  # this task itself was cancelled, not by close()
        finally:
            self._tasks.discard(conversation)
            writer.transport.abort()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: _Session
    ) -> None:
        assembler = Assembler()
        while True:
            pdu_type, _, length = struct.unpack(">BBI", await reader.readexactly(6))
            body = await reader.readexactly(length)
            if pdu_type == 0x01:
                if not await self._answer_request(writer, decode_pdu(1, body), session):
                    return
            elif pdu_type == 0x04:
                session.received += 6 + length
                vanish = self.behaviour.vanish_after
                if vanish is not None and session.received >= vanish:
                    return  # the caller drops the transport: a reset, no A-ABORT
                for context_id, command, dataset in assembler.feed(body):
                    self.requests.append(command)
                    session.requests += 1
                    if not await self._respond(writer, session, context_id, command, dataset):
                        return
            elif pdu_type in (0x05, 0x07):
                if self.behaviour.never_close:
                    continue
                if pdu_type == 0x05:
                    await self._write(writer, session, raw.release_rp())
                return

    async def _answer_request(
        self, writer: asyncio.StreamWriter, rq: AssociateRQ, session: _Session
    ) -> bool:
        if self.behaviour.reject is not None:
            await self._write(writer, session, encode_pdu(self.behaviour.reject))
            return False
        if self.behaviour.answer_with is not None:
            return await self._write(writer, session, self.behaviour.answer_with)
        contexts = []
        for context in rq.presentation_contexts:
            session.contexts[context.context_id] = context.abstract_syntax
            syntax = context.transfer_syntaxes[0] if context.transfer_syntaxes else ""
            contexts.append(PresentationContextAC(context.context_id, 0, syntax))
        ac = AssociateAC(
            rq.called_ae_title,
            rq.calling_ae_title,
            tuple(contexts),
            UserInformation(max_length=16384, implementation_class_uid="1.2.3.4"),
        )
        await self._write(writer, session, encode_pdu(ac))
        return True

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        session: _Session,
        context_id: int,
        command: dict[int, object],
        dataset: object,
    ) -> bool:
        behaviour = self.behaviour
        if behaviour.never_respond:
            return True
        limit = behaviour.abort_after_requests
        if limit is not None and session.requests > limit:
            await self._write(writer, session, raw.abort(2, 0))
            return False
        field_value = int(command.get(0x00000100, 0))  # type: ignore[call-overload]
        identifier = bytes(dataset) if isinstance(dataset, (bytes, bytearray)) else None
        if field_value in _PENDING_CAPABLE:
            for _ in range(behaviour.pending):
                if not await self._message(
                    writer, session, context_id, command, 0xFF00, identifier
                ):
                    return False
        return await self._message(writer, session, context_id, command, behaviour.status, None)

    async def _message(
        self,
        writer: asyncio.StreamWriter,
        session: _Session,
        context_id: int,
        request: dict[int, object],
        status: int,
        dataset: bytes | None,
    ) -> bool:
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        if self.behaviour.respond_with is not None:
            return await self._write(writer, session, self.behaviour.respond_with)
        response: dict[int, object] = {
            0x00000100: int(request.get(0x00000100, 0)) | 0x8000,  # type: ignore[call-overload]
            0x00000120: request.get(0x00000110, 0),
            0x00000800: 0x0101 if dataset is None else 0x0000,
            0x00000900: status,
        }
        for tag in (0x00000002, 0x00001000):
            if tag in request:
                response[tag] = request[tag]
        if 0x00000003 in request:
            response[0x00000002] = request[0x00000003]
        data = self._pdus(context_id, 0x01, encode_command(response))
        if dataset is not None:
            data += self._pdus(context_id, 0x00, dataset)
        return await self._write(writer, session, data)

    def _pdus(self, context_id: int, control: int, payload: bytes) -> bytes:
        """One message part as P-DATA-TF PDUs, split and mislabelled as the behaviour says."""
        size = self.behaviour.pdv_size or max(len(payload), 1)
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        pdvs = [
            raw.pdv(context_id, control | (0x02 if i == len(pieces) - 1 else 0), piece)
            for i, piece in enumerate(pieces)
        ]
        groups = [[p] for p in pdvs] if self.behaviour.pdv_per_pdu else [pdvs]
        error = self.behaviour.length_error
        return b"".join(raw.p_data(*group, length=sum(map(len, group)) + error) for group in groups)

    async def _write(self, writer: asyncio.StreamWriter, session: _Session, data: bytes) -> bool:
        """Write, or write part and close when the behaviour cuts the connection."""
        cut = self.behaviour.cut_after
        if cut is not None and session.sent + len(data) > cut:
            writer.write(data[: max(cut - session.sent, 0)])
            await writer.drain()
            writer.transport.abort()
            return False
        session.sent += len(data)
        writer.write(data)
        await writer.drain()
        return True
