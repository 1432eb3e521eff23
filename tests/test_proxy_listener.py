"""The listener behind a PROXY protocol proxy: the client's address is the peer's.

A relay in the test stands for HAProxy: it accepts on loopback, connects to
the listener, writes a PROXY header naming the client it chooses, then
copies bytes both ways. Associations made through it are real ones.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from dicomnet.core.proxy_protocol import V2_SIGNATURE
from dicomnet.errors import AssociationRejected
from dicomnet.net import client
from dicomnet.net.listener import Listener, ListenerLimits
from dicomnet.net.proxy import ProxyPolicy
from dicomnet.net.tls import client_context, server_context

from tls_certificates import Certificates, make_certificates


def v2_header(source: tuple[str, int]) -> bytes:
    family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
    destination = ("2001:db8::1" if family == socket.AF_INET6 else "10.9.9.9", 104)
    body = (
        socket.inet_pton(family, source[0])
        + socket.inet_pton(family, destination[0])
        + struct.pack("!HH", source[1], destination[1])
    )
    code = 0x21 if family == socket.AF_INET6 else 0x11
    return V2_SIGNATURE + bytes([0x21, code]) + struct.pack("!H", len(body)) + body


def v1_header(source: tuple[str, int]) -> bytes:
    return f"PROXY TCP4 {source[0]} 10.9.9.9 {source[1]} 104\r\n".encode()


class Recorder:
    """A listener observer keeping what it is told."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.rejected: list[str] = []
        self.refused: list[tuple[str, str]] = []

    def association_accepted(self, association: Any) -> None:
        self.accepted.append(association.peer)

    def association_rejected(self, association: Any, rejection: Any) -> None:
        self.rejected.append(association.peer)

    def peer_refused(self, address: str, reason: str) -> None:
        self.refused.append((address, reason))


@asynccontextmanager
async def relay(target_port: int, header: bytes) -> AsyncIterator[int]:
    """A one-way-header TCP relay on loopback; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        up_writer.write(header)
        for task in (
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()


@asynccontextmanager
async def proxied_listener(
    trusted: tuple[str, ...] = ("127.0.0.1/32",), **limits: Any
) -> AsyncIterator[tuple[Listener, Recorder]]:
    listener = Listener("PACS", limits=ListenerLimits(artim_timeout=5.0, **limits))
    listener.proxy_policy = ProxyPolicy.from_strings(trusted)
    recorder = Recorder()
    listener.observers.append(recorder)
    await listener.listen("127.0.0.1", 0)
    try:
        yield listener, recorder
    finally:
        await listener.close(timeout=0)


async def echo(port: int) -> int:
    async with client.connect("127.0.0.1", port, called_ae_title="PACS") as association:
        response = await association.echo()
        return int(response.status)


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def closed_unanswered(reader: asyncio.StreamReader) -> bool:
    """True when the listener closed the connection without a byte (FIN or RST)."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (v2_header(("192.0.2.7", 50123)), "192.0.2.7:50123"),
        (v2_header(("2001:db8::7", 40000)), "[2001:db8::7]:40000"),
        (v1_header(("198.51.100.4", 6000)), "198.51.100.4:6000"),
    ],
    ids=["v2-tcp4", "v2-tcp6", "v1-tcp4"],
)
def test_header_from_trusted_proxy_makes_the_client_the_peer(header: bytes, peer: str) -> None:
    async def scenario() -> None:
        async with proxied_listener() as (listener, recorder):
            async with relay(listener.port, header) as port:
                assert await echo(port) == 0
            assert recorder.accepted == [peer]
            await until(lambda: not listener.associations)

    run(scenario())


def test_per_address_cap_counts_the_real_clients() -> None:
    async def scenario() -> None:
        async with proxied_listener(max_associations_per_address=1) as (listener, recorder):
            async with (
                relay(listener.port, v2_header(("192.0.2.1", 1000))) as first,
                relay(listener.port, v2_header(("192.0.2.2", 1000))) as second,
            ):
                async with client.connect("127.0.0.1", first, called_ae_title="PACS") as a:
                    # another client behind the same proxy is not capped by the first
                    async with client.connect("127.0.0.1", second, called_ae_title="PACS") as b:
                        assert (await a.echo()).status == (await b.echo()).status == 0
                    # the same client twice is
                    with pytest.raises(AssociationRejected):
                        async with client.connect("127.0.0.1", first, called_ae_title="PACS"):
                            pass
            assert sorted(recorder.accepted) == ["192.0.2.1:1000", "192.0.2.2:1000"]
            assert recorder.rejected == ["192.0.2.1:1000"]

    run(scenario())


def test_header_from_untrusted_peer_is_refused_and_logged(caplog: Any) -> None:
    async def scenario() -> None:
        async with proxied_listener(trusted=("10.0.0.0/8",)) as (listener, recorder):
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(v2_header(("192.0.2.66", 1)))
            assert await closed_unanswered(reader)
            writer.close()
            await until(lambda: bool(recorder.refused))
            assert recorder.refused[0][0] == "127.0.0.1"
            assert "untrusted" in recorder.refused[0][1]
            # the same peer without a header is an ordinary, direct client
            assert await echo(listener.port) == 0
            assert recorder.accepted[0].startswith("127.0.0.1:")
            await until(lambda: not listener.associations)

    with caplog.at_level("WARNING", logger="dicomnet.net.proxy"):
        run(scenario())
    assert any("untrusted" in r.getMessage() for r in caplog.records)


def test_trusted_proxy_without_header_is_a_direct_peer_and_local_keeps_it() -> None:
    """A C-ECHO health check from the proxy's host, and a LOCAL header, keep its address."""

    async def scenario() -> None:
        async with proxied_listener() as (listener, recorder):
            assert await echo(listener.port) == 0
            local = V2_SIGNATURE + b"\x20\x00\x00\x00"
            async with relay(listener.port, local) as port:
                assert await echo(port) == 0
            assert len(recorder.accepted) == 2
            assert all(peer.startswith("127.0.0.1:") for peer in recorder.accepted)

    run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        V2_SIGNATURE + b"\x2f\x11\x00\x0c" + bytes(12),
        b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n",
        b"PROXY " + b"9" * 200,
        V2_SIGNATURE + b"\x21\x11\xff\xff",
    ],
    ids=["v2-bad-command", "v1-bad-address", "v1-oversize", "v2-oversize"],
)
def test_malformed_header_from_trusted_proxy_is_refused(garbage: bytes) -> None:
    async def scenario() -> None:
        async with proxied_listener() as (listener, recorder):
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(garbage)
            assert await closed_unanswered(reader)
            writer.close()
            await until(lambda: bool(recorder.refused) and not listener.associations)
            assert recorder.accepted == []

    run(scenario())


def test_silent_connection_is_closed_after_artim_and_forgotten() -> None:
    async def scenario() -> None:
        listener = Listener("PACS", limits=ListenerLimits(artim_timeout=0.3))
        listener.proxy_policy = ProxyPolicy.from_strings(["127.0.0.1"])
        await listener.listen("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(V2_SIGNATURE[:7])  # half a header, then nothing
            assert await closed_unanswered(reader)
            writer.close()
            await until(lambda: not listener.associations)
        finally:
            await listener.close(timeout=0)

    run(scenario())


def test_trusted_proxy_networks() -> None:
    policy = ProxyPolicy.from_strings(["10.0.0.0/8", "192.0.2.5", "2001:db8::/32"])
    assert policy.trusts("10.200.3.4")
    assert policy.trusts("::ffff:10.1.1.1")  # an IPv4 peer on a dual-stack socket
    assert policy.trusts("192.0.2.5") and not policy.trusts("192.0.2.6")
    assert policy.trusts("2001:db8:1::9") and not policy.trusts("2001:db9::1")
    assert not policy.trusts("not an address")
    with pytest.raises(ValueError, match="ADDR/PREFIX"):
        ProxyPolicy.from_strings(["10.0.0.0/33"])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


def test_header_then_tls_from_trusted_proxy(certs: Certificates) -> None:
    """HAProxy passing TLS through: the header first, then the handshake, end to end."""

    async def scenario() -> None:
        listener = Listener("PACS", limits=ListenerLimits(artim_timeout=5.0))
        listener.proxy_policy = ProxyPolicy.from_strings(["127.0.0.1"])
        recorder = Recorder()
        listener.observers.append(recorder)
        await listener.listen(
            "127.0.0.1", 0, ssl=server_context(certs.server_cert, certs.server_key)
        )
        try:
            async with relay(listener.port, v2_header(("192.0.2.9", 4242))) as port:
                async with client.connect(
                    "127.0.0.1", port, called_ae_title="PACS", ssl=client_context(ca=certs.ca)
                ) as association:
                    assert (await association.echo()).status == 0
                    secure = association.network_stream
                    assert secure is not None and secure.get_extra_info("ssl_object") is not None
            assert recorder.accepted == ["192.0.2.9:4242"]
            # Over TLS a trusted proxy must send the header; an untrusted peer
            # goes straight to the handshake, so its header fails it.
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(raw_associate_start())
            assert await closed_unanswered(reader)
            writer.close()
            await until(lambda: bool(recorder.refused) and not listener.associations)
            assert "no PROXY protocol header" in recorder.refused[0][1]
        finally:
            await listener.close(timeout=0)

    run(scenario())


def test_failed_tls_handshake_is_reported_and_forgotten(certs: Certificates) -> None:
    """A peer speaking plain DICOM to a TLS port: observers hear ``tls_failed``."""
    failures: list[tuple[str, str]] = []

    class TlsRecorder:
        def tls_failed(self, address: str, reason: str) -> None:
            failures.append((address, reason))

    async def scenario() -> None:
        listener = Listener("PACS")
        listener.observers.append(TlsRecorder())
        await listener.listen(
            "127.0.0.1", 0, ssl=server_context(certs.server_cert, certs.server_key)
        )
        try:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
                writer.write(raw_associate_start())
                assert await closed_unanswered(reader)
                writer.close()
            await until(lambda: len(failures) == 3 and not listener.associations)
            assert listener.client_count == 0
            async with client.connect(
                "127.0.0.1", listener.port, called_ae_title="PACS", ssl=client_context(ca=certs.ca)
            ) as association:
                assert (await association.echo()).status == 0
        finally:
            await listener.close(timeout=0)

    run(scenario())
    assert {address for address, _ in failures} == {"127.0.0.1"}
    assert all(reason for _, reason in failures)


def raw_associate_start() -> bytes:
    from dicomnet.testing import raw

    return raw.associate_rq("PACS", "PLAIN")
