"""A DIMSE request as the association's send queue holds it, and its timeouts.

Both the association (:mod:`dicomnet.net.association`), which queues, sends and
completes requests, and the SCU operations (:mod:`dicomnet.net.operations`),
which build them, need these types; they live here so that neither module
imports the other's internals and the two do not form an import circle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

__all__ = ["OutgoingRequest", "RequestTimeouts"]


@dataclass(frozen=True, slots=True)
class RequestTimeouts:
    """The one timeout model of a DIMSE request, in seconds (None = no limit).

    Attributes
    ----------
    send : float | None
        A stall timer on writing the request's PDUs: it fires when the socket
        has taken no byte for this long (a peer that stopped reading), however
        long the whole message takes over a slow link. When it fires part way
        through a message, the association can carry only control PDUs from
        then on (``can_still_process_pdata_tf`` is False).
    send_total : float | None
        An optional limit on writing the whole message, progress or not.
    first_response : float | None
        From the request fully sent to its first response, pending or final.
    between_responses : float | None
        From one pending response to the next (C-FIND, C-MOVE, C-GET).
    total : float | None
        From enqueueing to the final response, whatever else happens.
    """

    send: float | None = 60.0
    first_response: float | None = 60.0
    between_responses: float | None = 60.0
    total: float | None = None
    send_total: float | None = None


class OutgoingRequest:
    """A DIMSE request on the send queue, and everything it received.

    Attributes
    ----------
    message : dimse message
        The request; its ``message_id`` is assigned when it is sent.
    responses : list
        Every response received, pending ones first.
    completed : asyncio.Future
        Resolves with the final response, or raises the error that ended it.
    """

    def __init__(
        self,
        message: Any,
        dataset: Any = None,
        *,
        context_id: int | None = None,
        timeouts: RequestTimeouts | None = None,
    ) -> None:
        self.message = message
        self.dataset = dataset
        self.context_id = context_id
        self.timeouts = timeouts
        self.responses: list[tuple[Any, Any]] = []
        self.completed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._updates: asyncio.Queue[tuple[Any, Any] | None] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._total_timer: asyncio.TimerHandle | None = None
        self._finished = False
        """Set once, when the request leaves the association (answered, failed or
        timed out); :attr:`completed` may be done earlier, cancelled by its caller."""

    @property
    def message_id(self) -> int:
        return int(self.message.message_id)

    @property
    def finished(self) -> bool:
        """Whether the request has left the association: answered, failed or timed out."""
        return self._finished

    async def iter_responses(self) -> AsyncIterator[tuple[Any, Any]]:
        """Yield ``(response, dataset)`` as responses arrive, the final one last."""
        while True:
            item = await self._updates.get()
            if item is None:
                break
            yield item
        completed = self.completed
        if completed.done() and not completed.cancelled() and completed.exception() is not None:
            raise completed.exception()  # type: ignore[misc]
