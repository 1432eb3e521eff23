"""Members of the two seed documents (shared/reference) that had no test of their own.

LEADTOOLS ``Listen``: the backlog (maxNumberOfPeers) reaches listen(2).
fo-dicom ``IDicomClientConnection``: TCP_NODELAY on both ends, ``Listener``
and ``StartListener``, ``OnConnectionClosedAsync``, ``OnReceiveAbortAsync``,
``OnReceiveAssociationAcceptAsync``, ``OnReceiveAssociationRejectAsync``,
``OnReceiveAssociationReleaseResponseAsync``, ``OnCStoreRequestAsync`` as an
overridden method, and ``SendAbortAsync`` with an explicit source and reason.
Real peers where one can produce the event: DCMTK storescp, dcmqrscp and
getscu's counterpart, pynetdicom; the misbehaving SCP of dicomnet.testing
for a connection that drops without an A-ABORT.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from dicomnet.core.dimse import CommandField
from dicomnet.core.pdu import AssociateAC
from dicomnet.core.uids import STUDY_ROOT_GET
from dicomnet.errors import AssociationAborted, AssociationRejected, ConnectionClosed
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest
from dicomnet.net.client import ClientConnection
from dicomnet.net.listener import Listener
from dicomnet.net.retrieve import get_contexts
from dicomnet.testing.scp import Behaviour, MisbehavingSCP

from factory import make_study
from peers import dcmqrscp, dcmtk_server, free_port, run_dcmtk

CT = "1.2.840.10008.5.1.4.1.1.2"


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recording(ClientConnection):
    """Every callback of the seed, recorded in order."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[tuple[Any, ...]] = []

    def on_receive_association_accept(self, association: AssociateAC) -> None:
        self.calls.append(("accept", association))

    def on_receive_association_reject(self, result: int, source: int, reason: int) -> None:
        self.calls.append(("reject", result, source, reason))

    def on_receive_association_release_response(self) -> None:
        self.calls.append(("release_response",))

    def on_receive_abort(self, source: int, reason: int) -> None:
        self.calls.append(("abort", source, reason))

    def on_connection_closed(self, exception: BaseException | None) -> None:
        self.calls.append(("closed", exception))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


# -- LEADTOOLS Listen: the backlog ----------------------------------------------------------
def listen_queue_limit(port: int) -> int:
    """Send-Q of a listening socket in ``ss -ltn``: the backlog given to listen(2)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = out.splitlines()
    return int(line.split()[2])


@pytest.mark.parametrize("backlog", [3, 77])
def test_the_backlog_reaches_listen(backlog: int) -> None:
    async def scenario() -> int:
        async with Listener("SCP") as listener:
            await listener.listen("127.0.0.1", 0, backlog)
            return listen_queue_limit(listener.port)

    assert run(scenario()) == backlog


# -- TCP_NODELAY on both ends ----------------------------------------------------------------
def nodelay(transport: Any) -> bool:
    sock = transport.get_extra_info("socket")
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.interop
def test_tcp_nodelay_on_the_client_against_storescp() -> None:
    port = free_port()

    async def scenario() -> bool:
        async with client.connect("127.0.0.1", port) as assoc:
            return nodelay(assoc.network_stream)

    with dcmtk_server("storescp", [str(port)], port):
        assert run(scenario())


@pytest.mark.interop
def test_tcp_nodelay_on_the_listener_against_pynetdicom() -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: list[bool] = []

    async def scenario() -> None:
        async with Listener("SCP") as listener:
            listener.observers.append(
                type("Probe", (), {"association_accepted": lambda self, a: seen.append(
                    nodelay(a.protocol.transport))})()
            )  # fmt: skip
            await listener.listen("127.0.0.1", 0)

            def associate() -> None:
                ae = AE()
                ae.add_requested_context("1.2.840.10008.1.1")
                assoc = ae.associate("127.0.0.1", listener.port, ae_title="SCP")
                assert assoc.is_established
                assoc.release()

            await asyncio.to_thread(associate)

    run(scenario())
    assert seen == [True]


# -- Listener, StartListener; accept and release response ------------------------------------
@pytest.mark.interop
def test_listener_start_listener_accept_and_release_response_against_storescp() -> None:
    port = free_port()

    async def scenario() -> Recording:
        assoc = await client.connect("127.0.0.1", port, connection_class=Recording)
        assert isinstance(assoc, Recording)
        receiving = assoc.start_listener()
        assert receiving is assoc.listener
        assert not receiving.done()  # receiving while the association lasts
        assert (await assoc.echo()).status == 0
        assert not receiving.done()
        await assoc.release()
        await asyncio.wait_for(receiving, 5)  # completes once the connection stops receiving
        return assoc

    with dcmtk_server("storescp", [str(port)], port):
        assoc = run(scenario())
    # fo-dicom's order: the release response, then the connection closed without an error
    assert assoc.names() == ["accept", "release_response", "closed"]
    assert assoc.calls[-1][1] is None
    assert isinstance(assoc.calls[0][1], AssociateAC)
    assert assoc.calls[0][1].presentation_contexts[0].result == 0


# -- OnReceiveAssociationRejectAsync ---------------------------------------------------------
@pytest.mark.interop
def test_reject_callback_against_dcmqrscp(tmp_path: Path) -> None:
    made: list[Recording] = []

    class Made(Recording):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            made.append(self)

    async def scenario() -> None:
        with pytest.raises(AssociationRejected):
            await client.connect(
                "127.0.0.1", port, called_ae_title="NOT-QRSCP", connection_class=Made
            )

    with dcmqrscp(tmp_path, free_port()) as port:
        run(scenario())
    (assoc,) = made
    name, result, source, reason = assoc.calls[0]
    assert name == "reject" and (result, source) == (1, 1) and reason == 7
    assert "accept" not in assoc.names()


# -- OnReceiveAbortAsync ---------------------------------------------------------------------
@pytest.mark.interop
def test_receive_abort_callback_against_pynetdicom() -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    def on_echo(event: Any) -> int:
        event.assoc.abort()
        return 0x0000

    ae = AE(ae_title="PYSCP")
    ae.add_supported_context("1.2.840.10008.1.1")
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
    )

    async def scenario() -> Recording:
        assoc = await client.connect("127.0.0.1", port, connection_class=Recording)
        assert isinstance(assoc, Recording)
        with pytest.raises(AssociationAborted) as info:
            await assoc.echo()
        assert (info.value.source, info.value.reason) == (0, 0)
        return assoc

    try:
        assoc = run(scenario())
    finally:
        server.shutdown()
    assert ("abort", 0, 0) in assoc.calls
    assert assoc.names()[0] == "accept"


# -- OnConnectionClosedAsync -----------------------------------------------------------------
def test_connection_closed_callback_when_the_peer_drops_without_abort() -> None:
    async def scenario() -> Recording:
        async with MisbehavingSCP(Behaviour(vanish_after=1)) as scp:
            assoc = await client.connect("127.0.0.1", scp.port, connection_class=Recording)
            assert isinstance(assoc, Recording)
            with pytest.raises(ConnectionClosed):
                await assoc.echo()
            return assoc

    assoc = run(scenario())
    assert assoc.names() == ["accept", "closed"]
    assert assoc.calls[-1][1] is not None  # it ended with an error, not a release


# -- OnCStoreRequestAsync, overridden as a method ---------------------------------------------
@pytest.mark.interop
def test_on_c_store_request_overridden_as_a_method_receives_c_get_suboperations(
    tmp_path: Path,
) -> None:
    study, paths = make_study(tmp_path / "study", 3)
    received: list[str] = []

    class Getter(ClientConnection):
        async def on_c_store_request(self, request: IncomingRequest) -> int:  # type: ignore[override]
            received.append(str(request.dataset.SOPInstanceUID))
            return 0x0000

    async def scenario() -> int:
        from pydicom.dataset import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        contexts, roles = get_contexts(STUDY_ROOT_GET, [CT])
        async with client.connect(
            "127.0.0.1",
            port,
            called_ae_title="QRSCP",
            contexts=contexts,
            roles=roles,
            connection_class=Getter,
        ) as assoc:
            responses = [r async for r in assoc.get(query, STUDY_ROOT_GET)]
        return responses[-1].message.number_of_completed_suboperations

    with dcmqrscp(tmp_path / "qr", free_port()) as port:
        loaded = run_dcmtk("storescu", "-aec", "QRSCP", "127.0.0.1", str(port), *map(str, paths))
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert run(scenario()) == 3
    assert len(received) == 3


def test_on_c_store_request_still_registers_a_handler() -> None:
    async def scenario() -> Any:
        association = ClientConnection()

        async def handler(request: IncomingRequest) -> int:
            return 0

        assert association.on_c_store_request(handler) is handler
        return association.handlers[CommandField.C_STORE_RQ]

    assert run(scenario()).__name__ == "handler"


# -- SendAbortAsync with an explicit source and reason ----------------------------------------
@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 6), (2, 2)])
def test_send_abort_with_explicit_source_and_reason(source: int, reason: int) -> None:
    ended: list[BaseException | None] = []
    done = threading.Event()

    class Observer:
        def association_ended(self, association: Any, error: BaseException | None) -> None:
            ended.append(error)
            done.set()

    async def scenario() -> None:
        async with Listener("SCP") as listener:
            listener.observers.append(Observer())
            await listener.listen("127.0.0.1", 0)
            assoc = await client.connect("127.0.0.1", listener.port, called_ae_title="SCP")
            assoc.send_abort(source, reason)
            await asyncio.wait_for(assoc.listener, 5)
            for _ in range(100):
                if done.is_set():
                    break
                await asyncio.sleep(0.05)

    run(scenario())
    (error,) = ended
    assert isinstance(error, AssociationAborted)
    assert (error.source, error.reason) == (source, reason)
