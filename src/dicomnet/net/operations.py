"""The DIMSE-C operations a service user invokes, on the request queue.

Every operation enqueues an :class:`~dicomnet.net.association.OutgoingRequest`
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

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicomnet.core import dimse
from dicomnet.core.status import StatusClass, status_class
from dicomnet.core.uids import VERIFICATION_SOP_CLASS
from dicomnet.dataset.encoding import decode_dataset, encode_dataset
from dicomnet.net.requests import OutgoingRequest, RequestTimeouts
from dicomnet.net.store_client import prepare_store

if TYPE_CHECKING:
    from dicomnet.core.negotiation import Negotiated

__all__ = ["NResult", "QueryResponse", "ServiceUser"]


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


@dataclass(frozen=True, slots=True)
class NResult:
    """The outcome of a DIMSE-N request.

    Attributes
    ----------
    status : int
        The response status (PS3.7 C; 0x0000 success, 0x01xx/0xBxxx warning...).
    attributes : pydicom.Dataset | None
        The attribute list of the response (N-GET values, N-CREATE/N-SET
        attributes, N-ACTION reply, N-EVENT-REPORT reply), decoded.
    message : dimse response
        The response itself: affected SOP class/instance, error comment and
        offending elements where the peer sent them.
    """

    status: int
    attributes: Any
    message: Any

    @property
    def ok(self) -> bool:
        return status_class(self.status) in (StatusClass.SUCCESS, StatusClass.WARNING)


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
        mapped, never decoded (see :mod:`dicomnet.net.store_client`).
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
    ) -> AsyncGenerator[QueryResponse, None]:
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
    ) -> AsyncGenerator[QueryResponse, None]:
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
    ) -> AsyncGenerator[QueryResponse, None]:
        """C-GET (PS3.4 C): the C-STOREs arrive on this association, to the
        ``on_c_store_request`` handler; responses as for :meth:`move`."""
        message = dimse.CGetRQ(
            message_id=0, affected_sop_class_uid=model, priority=priority, has_dataset=True
        )
        return self._query(message, identifier, model, timeouts)

    # -- DIMSE-N (PS3.7 10) ---------------------------------------------------------------
    async def n_event_report(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        event_type_id: int,
        event_information: Any = None,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-EVENT-REPORT: notify the peer of an event of a managed SOP instance."""
        message = dimse.NEventReportRQ(
            message_id=0,
            affected_sop_class_uid=sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
            event_type_id=event_type_id,
            has_dataset=event_information is not None,
        )
        return await self._n_request(message, sop_class_uid, event_information, timeouts)

    async def n_get(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        attribute_identifier_list: Sequence[int | str] | None = None,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-GET: the values of some (or, with no list, all) attributes of an instance.

        ``attribute_identifier_list`` holds tags (``0x00080070``, pydicom
        ``Tag``) or keywords (``"Manufacturer"``); None or empty asks for all.
        """
        from pydicom.tag import Tag

        message = dimse.NGetRQ(
            message_id=0,
            requested_sop_class_uid=sop_class_uid,
            requested_sop_instance_uid=sop_instance_uid,
            attribute_identifier_list=(
                tuple(int(Tag(tag)) for tag in attribute_identifier_list)
                if attribute_identifier_list
                else None
            ),
        )
        return await self._n_request(message, sop_class_uid, None, timeouts)

    async def n_set(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        modification_list: Any,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-SET: change attribute values of an instance."""
        message = dimse.NSetRQ(
            message_id=0,
            requested_sop_class_uid=sop_class_uid,
            requested_sop_instance_uid=sop_instance_uid,
            has_dataset=True,
        )
        return await self._n_request(message, sop_class_uid, modification_list, timeouts)

    async def n_action(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        action_type_id: int,
        action_information: Any = None,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-ACTION: ask the peer to perform an action on an instance."""
        message = dimse.NActionRQ(
            message_id=0,
            requested_sop_class_uid=sop_class_uid,
            requested_sop_instance_uid=sop_instance_uid,
            action_type_id=action_type_id,
            has_dataset=action_information is not None,
        )
        return await self._n_request(message, sop_class_uid, action_information, timeouts)

    async def n_create(
        self,
        sop_class_uid: str,
        sop_instance_uid: str | None = None,
        attribute_list: Any = None,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-CREATE: create an instance (the peer assigns its UID when none is given)."""
        message = dimse.NCreateRQ(
            message_id=0,
            affected_sop_class_uid=sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
            has_dataset=attribute_list is not None,
        )
        return await self._n_request(message, sop_class_uid, attribute_list, timeouts)

    async def n_delete(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        *,
        timeouts: RequestTimeouts | None = None,
    ) -> NResult:
        """N-DELETE: delete an instance."""
        message = dimse.NDeleteRQ(
            message_id=0,
            requested_sop_class_uid=sop_class_uid,
            requested_sop_instance_uid=sop_instance_uid,
        )
        return await self._n_request(message, sop_class_uid, None, timeouts)

    async def _n_request(
        self,
        message: Any,
        sop_class_uid: str,
        dataset: Any,
        timeouts: RequestTimeouts | None,
    ) -> NResult:
        context_id = self._accepted_context(sop_class_uid)
        syntax = self.negotiated.contexts[context_id].transfer_syntax
        payload = dataset
        if dataset is not None and not isinstance(dataset, (bytes, bytearray, memoryview)):
            payload = encode_dataset(dataset, syntax)
        request = self._enqueue(message, payload, context_id, timeouts)
        response = await request.completed
        data = request.responses[-1][1] if request.responses else None
        attributes = decode_dataset(data, syntax) if data is not None else None
        return NResult(int(response.status), attributes, response)

    def _accepted_context(self, sop_class_uid: str) -> int:
        for context_id, context in self.negotiated.contexts.items():
            if context.abstract_syntax == sop_class_uid:
                return context_id
        from dicomnet.net.store_client import NoAcceptedContext

        raise NoAcceptedContext(f"the peer accepted no presentation context for {sop_class_uid}")

    async def cancel(self, request: OutgoingRequest) -> None:
        """C-CANCEL-RQ for an outstanding C-FIND, C-MOVE or C-GET (PS3.7 9.3.2.3)."""
        if request.finished:
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
        return self.send_request(
            OutgoingRequest(message, dataset, context_id=context_id, timeouts=timeouts)
        )

    async def _query(
        self,
        message: Any,
        identifier: Any,
        model: str,
        timeouts: RequestTimeouts | None,
    ) -> AsyncGenerator[QueryResponse, None]:
        context_id = self._accepted_context(model)
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
            if not finished and not request.finished:
                await self.cancel(request)
                try:
                    await request.completed
                except Exception:  # the request's outcome was already reported or is moot
                    pass
