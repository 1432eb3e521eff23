"""The DIMSE-C operations a service user invokes, on the request queue.

Every operation enqueues an :class:`~dicomnet.association.OutgoingRequest`
(so it shares the asynchronous operations window and the timeout model with
everything else) and waits on it: ``store`` and ``echo`` for the final
response; ``find``, ``move`` and ``get`` as async iterators of responses.

Closing a ``find``/``move``/``get`` iterator early sends C-CANCEL-RQ and
waits for the final (Cancel) response, so the association stays usable. Use
``async with contextlib.aclosing(assoc.find(...)) as responses`` to have that
happen when the block ends; a bare ``break`` leaves it to the moment asyncio
finalizes the abandoned iterator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicomnet import dimse
from dicomnet.datasets import decode_dataset, encode_dataset
from dicomnet.status import StatusClass, status_class
from dicomnet.store_scu import prepare_store
from dicomnet.uids import VERIFICATION_SOP_CLASS

if TYPE_CHECKING:
    from dicomnet.association import OutgoingRequest, RequestTimeouts
    from dicomnet.negotiation import Negotiated

__all__ = ["QueryResponse", "ServiceUser"]


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """One C-FIND, C-MOVE or C-GET response.

    Attributes
    ----------
    status : int
        The response status (0xFF00/0xFF01 pending, 0x0000 success, 0xFE00 cancel...).
    identifier : pydicom.Dataset | None
        The matching identifier (C-FIND pending) or the failed SOP instance
        list (C-MOVE/C-GET final), decoded.
    message : dimse message
        The response itself, with the sub-operation counters of C-MOVE/C-GET.
    """

    status: int
    identifier: Any
    message: Any

    @property
    def pending(self) -> bool:
        return status_class(self.status) is StatusClass.PENDING


class ServiceUser:
    """DIMSE-C requests of an association; mixed into :class:`Association`."""

    negotiated: Negotiated

    if TYPE_CHECKING:

        def send_request(self, request: OutgoingRequest) -> OutgoingRequest: ...

        async def send_message(
            self, context_id: int, message: Any, dataset: Any = None
        ) -> None: ...

        def _context_for(self, request: OutgoingRequest) -> int: ...

    async def echo(self, *, timeouts: RequestTimeouts | None = None) -> Any:
        """C-ECHO (Verification, PS3.4 A): the final C-ECHO-RSP."""
        request = self._enqueue(
            dimse.CEchoRQ(message_id=0, affected_sop_class_uid=VERIFICATION_SOP_CLASS),
            None,
            None,
            timeouts,
        )
        return await request.completed

    async def store(
        self,
        source: Any,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        transfer_syntax: str | None = None,
        priority: int = dimse.Priority.MEDIUM,
        move_originator_ae_title: str | None = None,
        move_originator_message_id: int | None = None,
        timeouts: RequestTimeouts | None = None,
    ) -> Any:
        """C-STORE (PS3.4 B) of a Dataset, raw bytes or a Part 10 file; the final response.

        A file whose transfer syntax was accepted goes out as its own bytes,
        mapped, never decoded (see :mod:`dicomnet.store_scu`).
        """
        prepared = prepare_store(
            self.negotiated,
            source,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
        )
        try:
            message = dimse.CStoreRQ(
                message_id=0,
                affected_sop_class_uid=prepared.sop_class_uid,
                affected_sop_instance_uid=prepared.sop_instance_uid,
                priority=priority,
                move_originator_ae_title=move_originator_ae_title,
                move_originator_message_id=move_originator_message_id,
                has_dataset=True,
            )
            request = self._enqueue(message, prepared.data, prepared.context_id, timeouts)
            return await request.completed
        finally:
            prepared.close()

    def find(
        self,
        identifier: Any,
        model: str,
        *,
        priority: int = dimse.Priority.MEDIUM,
        timeouts: RequestTimeouts | None = None,
    ) -> AsyncIterator[QueryResponse]:
        """C-FIND (PS3.4 C): each response as it arrives, the final one last."""
        message = dimse.CFindRQ(
            message_id=0, affected_sop_class_uid=model, priority=priority, has_dataset=True
        )
        return self._query(message, identifier, model, timeouts)

    def move(
        self,
        identifier: Any,
        model: str,
        destination: str,
        *,
        priority: int = dimse.Priority.MEDIUM,
        timeouts: RequestTimeouts | None = None,
    ) -> AsyncIterator[QueryResponse]:
        """C-MOVE (PS3.4 C): pending responses with sub-operation counts, then the final one."""
        message = dimse.CMoveRQ(
            message_id=0,
            affected_sop_class_uid=model,
            priority=priority,
            move_destination=destination,
            has_dataset=True,
        )
        return self._query(message, identifier, model, timeouts)

    def get(
        self,
        identifier: Any,
        model: str,
        *,
        priority: int = dimse.Priority.MEDIUM,
        timeouts: RequestTimeouts | None = None,
    ) -> AsyncIterator[QueryResponse]:
        """C-GET (PS3.4 C): the C-STOREs arrive on this association, to the
        ``on_c_store_request`` handler; responses as for :meth:`move`."""
        message = dimse.CGetRQ(
            message_id=0, affected_sop_class_uid=model, priority=priority, has_dataset=True
        )
        return self._query(message, identifier, model, timeouts)

    async def cancel(self, request: OutgoingRequest) -> None:
        """C-CANCEL-RQ for an outstanding C-FIND, C-MOVE or C-GET (PS3.7 9.3.2.3)."""
        if request.completed.done():
            return
        cancel = dimse.CCancelRQ(message_id_being_responded_to=request.message_id)
        context_id = request.context_id or self._context_for(request)
        await self.send_message(context_id, cancel, None)

    # -- shared machinery ---------------------------------------------------------------
    def _enqueue(
        self,
        message: Any,
        dataset: Any,
        context_id: int | None,
        timeouts: RequestTimeouts | None,
    ) -> OutgoingRequest:
        from dicomnet.association import OutgoingRequest

        return self.send_request(
            OutgoingRequest(message, dataset, context_id=context_id, timeouts=timeouts)
        )

    async def _query(
        self,
        message: Any,
        identifier: Any,
        model: str,
        timeouts: RequestTimeouts | None,
    ) -> AsyncIterator[QueryResponse]:
        context_id = None
        for cid, context in self.negotiated.contexts.items():
            if context.abstract_syntax == model:
                context_id = cid
                break
        if context_id is None:
            from dicomnet.store_scu import NoAcceptedContext

            raise NoAcceptedContext(f"the peer accepted no presentation context for {model}")
        syntax = self.negotiated.contexts[context_id].transfer_syntax
        payload = identifier
        if not isinstance(identifier, (bytes, bytearray, memoryview)):
            payload = encode_dataset(identifier, syntax)
        request = self._enqueue(message, payload, context_id, timeouts)
        finished = False
        try:
            async for response, data in request.iter_responses():
                decoded = decode_dataset(data, syntax) if data is not None else None
                item = QueryResponse(int(response.status), decoded, response)
                finished = not item.pending
                yield item
        finally:
            if not finished and not request.completed.done():
                await self.cancel(request)
                try:
                    await request.completed
                except Exception:  # the request's outcome was already reported or is moot
                    pass
