"""C-ECHO interop with real peers: DCMTK tools and pynetdicom, over loopback.

Debian bookworm ships DCMTK 3.6.7, whose requestors cannot connect over IPv6
(``echoscu ::1 PORT`` fails with "Illegal service parameter"; IPv6 requestors
arrived in DCMTK 3.6.9), so IPv6 interop is proven with pynetdicom, and the
DCMTK tests use IPv4, including against a dual-stack listener.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys

import pytest

from dicomnet.net import client
from dicomnet.net.listener import IPType, Listener, ListenerLimits

from peers import dcmtk, dcmtk_env, dcmtk_server, free_port

pytestmark = pytest.mark.interop


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def dcmtk_tool(tool: str, *args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run a DCMTK client without blocking the loop that serves it."""
    process = await asyncio.create_subprocess_exec(
        dcmtk(tool),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dcmtk_env(),
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return int(process.returncode or 0), output.decode(errors="replace")


@pytest.mark.parametrize(
    ("host", "ip_type"),
    [("127.0.0.1", IPType.IPV4), ("*", IPType.IPV4_OR_IPV6)],
)
def test_echoscu_to_our_listener_on_port_zero(host: str, ip_type: IPType) -> None:
    async def scenario() -> None:
        async with Listener("DICOMNET") as listener:
            await listener.listen(host, 0, 16, ip_type)
            code, output = await dcmtk_tool(
                "echoscu", "-v", "-aec", "DICOMNET", "127.0.0.1", str(listener.port)
            )
            assert code == 0, output
            assert "Received Echo Response (Success)" in output

    run(scenario())


def test_echoscu_sees_the_association_cap() -> None:
    async def scenario() -> None:
        async with Listener("DICOMNET", limits=ListenerLimits(max_associations=1)) as listener:
            await listener.listen("127.0.0.1", 0, 16)
            held = await client.connect("127.0.0.1", listener.port)
            code, output = await dcmtk_tool("echoscu", "-v", "127.0.0.1", str(listener.port))
            assert code != 0
            assert "Association Rejected" in output
            assert "Local Limit Exceeded" in output or "local-limit-exceeded" in output.lower()
            assert (await held.echo()).status == 0
            await held.release()

    run(scenario())


def test_echoscu_with_unknown_called_ae_is_rejected() -> None:
    async def scenario() -> None:
        async with Listener("DICOMNET", require_called_ae_title=True) as listener:
            await listener.listen("127.0.0.1", 0, 16)
            code, output = await dcmtk_tool(
                "echoscu", "-v", "-aec", "NOTUS", "127.0.0.1", str(listener.port)
            )
            assert code != 0
            assert "Called AE Title Not Recognized" in output
            code, output = await dcmtk_tool(
                "echoscu", "-aec", "DICOMNET", "127.0.0.1", str(listener.port)
            )
            assert code == 0, output

    run(scenario())


def test_our_echo_cli_to_dcmtk_storescp() -> None:
    port = free_port()
    with dcmtk_server("storescp", ["--ignore", "-aet", "STORESCP", str(port)], port):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "dicomnet",
                "echo",
                "--aec",
                "STORESCP",
                "127.0.0.1",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


def test_our_echo_cli_reports_a_refused_connection() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "dicomnet", "echo", "--timeout", "5", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "cannot connect" in result.stderr


def test_our_client_against_dcmtk_storescp_release_and_abort() -> None:
    port = free_port()

    async def scenario() -> None:
        async with client.connect("127.0.0.1", port, called_ae_title="STORESCP") as assoc:
            for _ in range(3):
                assert (await assoc.echo()).status == 0
        assoc = await client.connect("127.0.0.1", port)
        await assoc.abort()
        assert assoc.finished.done()

    with dcmtk_server("storescp", ["--ignore", str(port)], port):
        run(scenario())


def _quiet_pynetdicom() -> None:
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_pynetdicom_scu_to_our_listener(host: str) -> None:
    from pynetdicom import AE

    _quiet_pynetdicom()
    family = IPType.IPV6 if ":" in host else IPType.IPV4

    async def scenario() -> None:
        async with Listener("DICOMNET") as listener:
            await listener.listen(host, 0, 16, family)

            def pynetdicom_echo() -> tuple[bool, int | None]:
                ae = AE(ae_title="PYNETDICOM")
                ae.add_requested_context("1.2.840.10008.1.1")
                assoc = ae.associate(host, listener.port, ae_title="DICOMNET")
                if not assoc.is_established:
                    return False, None
                status = assoc.send_c_echo()
                assoc.release()
                return True, int(status.Status) if status else None

            established, status = await asyncio.to_thread(pynetdicom_echo)
            assert established
            assert status == 0x0000

    run(scenario())


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_our_client_to_pynetdicom_scp(host: str) -> None:
    from pynetdicom import AE

    _quiet_pynetdicom()
    ae = AE(ae_title="PYNETSCP")
    ae.add_supported_context("1.2.840.10008.1.1")
    server = ae.start_server((host, 0), block=False)
    try:
        port = server.server_address[1]

        async def scenario() -> None:
            async with client.connect(host, port, called_ae_title="PYNETSCP") as assoc:
                assert (await assoc.echo()).status == 0
                assert assoc.negotiated.peer_implementation_class_uid

        run(scenario())
    finally:
        server.shutdown()


def test_pynetdicom_abort_is_seen_by_our_listener() -> None:
    from pynetdicom import AE

    _quiet_pynetdicom()

    async def scenario() -> None:
        async with Listener("DICOMNET") as listener:
            await listener.listen("127.0.0.1", 0, 16)

            def pynetdicom_abort() -> bool:
                ae = AE()
                ae.add_requested_context("1.2.840.10008.1.1")
                assoc = ae.associate("127.0.0.1", listener.port)
                ok = bool(assoc.is_established)
                assoc.abort()
                return ok

            assert await asyncio.to_thread(pynetdicom_abort)
            for _ in range(200):
                if listener.association_count == 0:
                    break
                await asyncio.sleep(0.01)
            assert listener.association_count == 0
            async with client.connect("127.0.0.1", listener.port) as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())


def test_listen_cli_prints_the_bound_port_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        code, output = asyncio.run(dcmtk_tool("echoscu", "127.0.0.1", str(port)))
        assert code == 0, output
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
