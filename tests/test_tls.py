"""DICOM over TLS (PS3.15 BCP195 profile): mutual authentication, refusals, DCMTK +tls."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from dicomnet.cli.main import main
from dicomnet.errors import ConnectionClosed
from dicomnet.net import client
from dicomnet.net.listener import Listener, ListenerLimits
from dicomnet.net.tls import client_context, server_context
from dicomnet.services.storage import FolderStorage

from factory import ct_dataset, dataset_bytes, write_part10
from peers import dcmtk, dcmtk_env, dcmtk_server, free_port, wait_for_port
from tls_certificates import Certificates, make_certificates

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def tls_listener(certs: Certificates, *, require: bool = True, **limits) -> Listener:
    listener = Listener("TLSSCP", limits=ListenerLimits(**limits))
    context = server_context(
        certs.server_cert, certs.server_key, ca=certs.ca, require_client_certificate=require
    )
    await listener.listen("127.0.0.1", 0, ssl=context)
    return listener


def ours(certs: Certificates) -> ssl.SSLContext:
    return client_context(ca=certs.ca, certificate=certs.client_cert, key=certs.client_key)


def test_echo_with_mutual_authentication(certs: Certificates) -> None:
    async def scenario() -> None:
        async with await tls_listener(certs) as listener:
            async with client.connect("127.0.0.1", listener.port, ssl=ours(certs)) as assoc:
                assert (await assoc.echo()).status == 0
                transport = assoc.network_stream
                assert transport is not None
                assert transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")

    run(scenario())


def test_host_name_is_checked_when_asked(certs: Certificates) -> None:
    async def scenario() -> None:
        async with await tls_listener(certs) as listener:
            context = client_context(
                ca=certs.ca,
                certificate=certs.client_cert,
                key=certs.client_key,
                check_hostname=True,
            )
            async with client.connect(
                "127.0.0.1", listener.port, ssl=context, server_hostname="localhost"
            ) as assoc:
                assert (await assoc.echo()).status == 0
            with pytest.raises(ConnectionClosed):
                await client.connect(
                    "127.0.0.1", listener.port, ssl=context, server_hostname="pacs.example"
                )

    run(scenario())


def test_refusals_do_not_stop_the_listener(certs: Certificates) -> None:
    async def scenario() -> None:
        async with await tls_listener(certs) as listener:
            no_certificate = client_context(ca=certs.ca)
            with pytest.raises(ConnectionClosed):
                async with client.connect("127.0.0.1", listener.port, ssl=no_certificate) as a:
                    await a.echo()
            stranger = client_context(
                ca=certs.ca, certificate=certs.stranger_cert, key=certs.stranger_key
            )
            with pytest.raises(ConnectionClosed):
                async with client.connect("127.0.0.1", listener.port, ssl=stranger) as a:
                    await a.echo()
            untrusting = client_context(ca=certs.stranger_cert)  # does not trust our server
            with pytest.raises(ConnectionClosed):
                await client.connect("127.0.0.1", listener.port, ssl=untrusting)
            old = client_context(ca=certs.ca, certificate=certs.client_cert, key=certs.client_key)
            with warnings.catch_warnings():  # the old versions are deprecated: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            with pytest.raises(ConnectionClosed):
                await client.connect("127.0.0.1", listener.port, ssl=old)
            async with client.connect("127.0.0.1", listener.port, ssl=ours(certs)) as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())


def test_a_peer_that_never_handshakes_blocks_nobody(certs: Certificates) -> None:
    async def scenario() -> None:
        async with await tls_listener(certs, tls_handshake_timeout=0.5) as listener:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            async with client.connect("127.0.0.1", listener.port, ssl=ours(certs)) as assoc:
                assert (await assoc.echo()).status == 0
            assert await asyncio.wait_for(reader.read(), 5) == b""  # cut off at the deadline
            writer.close()

    run(scenario())


@pytest.mark.interop
def test_dcmtk_storescu_over_tls_into_our_listener(certs: Certificates, tmp_path: Path) -> None:
    sent = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(3)]

    async def scenario() -> None:
        listener = Listener("TLSSCP", accept_any_storage=True)
        FolderStorage(tmp_path / "archive").attach(listener)
        context = server_context(
            certs.server_cert, certs.server_key, ca=certs.ca, require_client_certificate=True
        )
        await listener.listen("127.0.0.1", 0, ssl=context)
        async with listener:
            process = await asyncio.create_subprocess_exec(
                dcmtk("storescu"),
                "+tls", str(certs.client_key), str(certs.client_cert),
                "+cf", str(certs.ca),
                "-aec", "TLSSCP", "127.0.0.1", str(listener.port), *map(str, sent),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dcmtk_env(),
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, output.decode(errors="replace")

    run(scenario())
    stored = sorted(dataset_bytes(p) for p in (tmp_path / "archive").glob("*.dcm"))
    assert stored == sorted(dataset_bytes(p) for p in sent)


@pytest.mark.interop
def test_our_store_over_tls_into_dcmtk_storescp(certs: Certificates, tmp_path: Path) -> None:
    path = write_part10(ct_dataset(0), tmp_path / "in.dcm")
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    args = [
        "+tls", str(certs.server_key), str(certs.server_cert),
        "+cf", str(certs.ca), "-rc",
        "-od", str(received), str(port),
    ]  # fmt: skip
    with dcmtk_server("storescp", args, port):

        async def scenario() -> int:
            async with client.connect(
                "127.0.0.1", port, contexts=[(CT, ["1.2.840.10008.1.2.1"])], ssl=ours(certs)
            ) as assoc:
                return int((await assoc.store(path)).status)

        assert run(scenario()) == 0
    stored = list(received.iterdir())
    assert len(stored) == 1 and dataset_bytes(stored[0]) == dataset_bytes(path)


def test_command_line_listen_and_echo_over_tls(certs: Certificates, tmp_path: Path) -> None:
    port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1",
            "--port", str(port), "--dir", str(tmp_path / "archive"),
            "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
            "--tls-ca", str(certs.ca), "--require-client-cert",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        tls = [
            "--tls-ca", str(certs.ca),
            "--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key),
        ]  # fmt: skip
        runner = CliRunner()
        echoed = runner.invoke(main, ["echo", *tls, "127.0.0.1", str(port)])
        assert echoed.exit_code == 0, echoed.output
        path = write_part10(ct_dataset(0), tmp_path / "in.dcm")
        stored = runner.invoke(main, ["store", "-q", *tls, "127.0.0.1", str(port), str(path)])
        assert stored.exit_code == 0, stored.output
        refused = runner.invoke(main, ["echo", "--tls", "127.0.0.1", str(port)])
        assert refused.exit_code != 0  # the system CAs do not know our test CA
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    assert len(list((tmp_path / "archive").rglob("*.dcm"))) == 1
