"""The fo-dicom request queue: callbacks, the timeout model, a stalled send."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest
from pydicom.dataset import Dataset

from dicomnet.core import dimse
from dicomnet.core.uids import STUDY_ROOT_FIND, VERIFICATION_SOP_CLASS
from dicomnet.errors import LocalProtocolError, RequestTimeout
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest, Reply
from dicomnet.net.listener import Listener, ServerAssociation
from dicomnet.net.requests import OutgoingRequest, RequestTimeouts


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recording(client.ClientConnection):
    """Counts every callback, per request."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent: list[int] = []
        self.pending: list[int] = []
        self.completed: list[int] = []
        self.timed_out: list[tuple[int, float]] = []

    def on_request_sent(self, request: OutgoingRequest) -> None:
        self.sent.append(request.message_id)

    def on_request_pending(self, request: OutgoingRequest, response) -> None:
        self.pending.append(request.message_id)

    def on_request_completed(self, request: OutgoingRequest, response) -> None:
        self.completed.append(request.message_id)

    def on_request_timed_out(self, request: OutgoingRequest, timeout: float) -> None:
        self.timed_out.append((request.message_id, timeout))


def query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "*"
    return ds


async def find_listener(matches: int, delay: float, first_delay: float = 0.0) -> Listener:
    listener = Listener("QR")

    async def handle_find(request: IncomingRequest):
        await asyncio.sleep(first_delay)
        for index in range(matches):
            match = Dataset()
            match.PatientName = f"P{index}"
            yield Reply(0xFF00, match)
            await asyncio.sleep(delay)

    listener.on_c_find(handle_find, models=(STUDY_ROOT_FIND,))
    await listener.listen("127.0.0.1", 0)
    return listener


def connect_find(port: int, **kwargs):
    return client.connect(
        "127.0.0.1",
        port,
        contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2"])],
        connection_class=Recording,
        **kwargs,
    )


def test_callbacks_fire_once_per_request_in_order() -> None:
    async def scenario() -> None:
        async with await find_listener(3, 0.0) as listener:
            async with connect_find(listener.port, max_operations_invoked=4) as assoc:
                assert assoc.is_send_queue_empty
                echoes = [
                    assoc.send_request(
                        OutgoingRequest(
                            dimse.CEchoRQ(
                                message_id=0, affected_sop_class_uid=VERIFICATION_SOP_CLASS
                            )
                        )
                    )
                    for _ in range(5)
                ]
                assert not assoc.is_send_queue_empty
                responses = [r async for r in assoc.find(query(), STUDY_ROOT_FIND)]
                finals = await asyncio.gather(*(r.completed for r in echoes))
                assert [f.status for f in finals] == [0] * 5
                assert assoc.is_send_queue_empty
                assert not assoc.is_send_next_message_required
        assert len(responses) == 4
        assert sorted(assoc.sent) == sorted(set(assoc.sent)) and len(assoc.sent) == 6
        assert sorted(assoc.completed) == sorted(assoc.sent)  # exactly once each
        find_id = responses[-1].message.message_id_being_responded_to
        assert assoc.pending == [find_id] * 3
        assert assoc.timed_out == []

    run(scenario())


def test_first_response_timeout_names_its_timer() -> None:
    async def scenario() -> None:
        async with await find_listener(1, 0.0, first_delay=2.0) as listener:
            timeouts = RequestTimeouts(first_response=0.2)
            async with connect_find(listener.port) as assoc:
                with pytest.raises(RequestTimeout) as caught:
                    async with aclosing(
                        assoc.find(query(), STUDY_ROOT_FIND, timeouts=timeouts)
                    ) as responses:
                        async for _ in responses:
                            pass
                assert caught.value.timer == "first_response"
                assert caught.value.seconds == 0.2
                assert "first_response" in str(caught.value)
                assert [t for _, t in assoc.timed_out] == [0.2]
                assert assoc.completed == []  # a timed-out request never completes twice
                await assoc.abort()

    run(scenario())


def test_between_responses_timeout() -> None:
    async def scenario() -> None:
        async with await find_listener(3, 1.5) as listener:
            async with connect_find(
                listener.port, timeouts=RequestTimeouts(between_responses=0.2)
            ) as assoc:
                seen = []
                with pytest.raises(RequestTimeout) as caught:
                    async for response in assoc.find(query(), STUDY_ROOT_FIND):
                        seen.append(response)
                assert caught.value.timer == "between_responses"
                assert len(seen) == 1 and seen[0].pending
                await assoc.abort()

    run(scenario())


def test_total_timeout_fires_even_while_responses_flow() -> None:
    async def scenario() -> None:
        async with await find_listener(50, 0.05) as listener:
            timeouts = RequestTimeouts(between_responses=1.0, total=0.4)
            async with connect_find(listener.port) as assoc:
                seen = 0
                with pytest.raises(RequestTimeout) as caught:
                    async for _ in assoc.find(query(), STUDY_ROOT_FIND, timeouts=timeouts):
                        seen += 1
                assert caught.value.timer == "total"
                assert 2 <= seen < 50
                await assoc.abort()

    run(scenario())


def test_stalled_send_times_out_and_leaves_only_control_pdus() -> None:
    """A peer that stops reading: the send timer fires part way through a message."""

    async def scenario() -> None:
        listener = Listener("SCP", accept_any_storage=True)
        stalled: list[ServerAssociation] = []

        def stall(association: ServerAssociation, rq):
            stalled.append(association)
            return None

        listener.on_association_request = stall
        await listener.listen("127.0.0.1", 0)
        async with listener:
            ct = "1.2.840.10008.5.1.4.1.1.2"
            assoc = await client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(ct, ["1.2.840.10008.1.2.1"])],
                connection_class=Recording,
                timeouts=RequestTimeouts(send=0.5),
            )
            protocol = stalled[0].protocol
            assert protocol is not None and protocol.transport is not None
            protocol.transport.pause_reading()
            payload = bytes(64 << 20)
            with pytest.raises(RequestTimeout) as caught:
                await assoc.store(
                    payload,
                    sop_class_uid=ct,
                    sop_instance_uid="1.2.3.4",
                    transfer_syntax="1.2.840.10008.1.2.1",
                )
            assert caught.value.timer == "send"
            assert not assoc.can_still_process_pdata_tf
            with pytest.raises(LocalProtocolError):
                await assoc.echo()
            await assoc.abort()  # the peer reads nothing: after the short bound, a reset
            assert assoc.finished.done()

    run(scenario())


def test_send_next_message_restarts_a_queue_built_before_sending() -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            await listener.listen("127.0.0.1", 0)
            async with client.connect(
                "127.0.0.1", listener.port, max_operations_invoked=2
            ) as assoc:
                request = OutgoingRequest(
                    dimse.CEchoRQ(message_id=0, affected_sop_class_uid=VERIFICATION_SOP_CLASS)
                )
                assoc._queue.append(request)  # enqueued without starting the loop
                assert assoc.is_send_next_message_required
                assoc.send_next_message()
                assert (await request.completed).status == 0
                assert not assoc.is_send_next_message_required

    run(scenario())
