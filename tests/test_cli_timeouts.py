"""``--connect-timeout``, ``--acse-timeout`` and ``--dimse-timeout`` are separate timers.

Each is made to fire alone, with the other two long: a listening socket whose
accept queue is full (the SYN goes unanswered) for the connection; a peer
that accepts the TCP connection and never answers the A-ASSOCIATE-RQ for
ACSE; an SCP that accepts the association and never answers the C-ECHO
(``dicomnet.testing.MisbehavingSCP``) for DIMSE. Each failure names its timer.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dicomnet.testing.scp import Behaviour, MisbehavingSCP

LONG = "30"


async def dicomnet(*args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dicomnet", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, err.decode(), time.monotonic() - started


@contextmanager
def full_accept_queue() -> Iterator[int]:
    """A port where connections hang in SYN-SENT: its accept queue is full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_connect_timeout_alone() -> None:
    with full_accept_queue() as port:
        code, err, elapsed = asyncio.run(
            dicomnet("echo", "--connect-timeout", "1", "--acse-timeout", LONG,
                     "--dimse-timeout", LONG, "127.0.0.1", str(port))
        )  # fmt: skip
    assert code == 1
    assert "connect timeout after 1 s" in err, err
    assert elapsed < 20


def test_acse_timeout_alone() -> None:
    async def scenario() -> tuple[int, str, float]:
        held: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept the TCP connection, answer nothing

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            result = await dicomnet(
                "echo", "--connect-timeout", LONG, "--acse-timeout", "1",
                "--dimse-timeout", LONG, "127.0.0.1", str(port),
            )  # fmt: skip
        for writer in held:
            writer.close()
        return result

    code, err, elapsed = asyncio.run(scenario())
    assert code == 1
    assert "acse timeout after 1 s" in err, err
    assert elapsed < 20


def test_dimse_timeout_alone() -> None:
    async def scenario() -> tuple[int, str, float]:
        async with MisbehavingSCP(Behaviour(never_respond=True)) as scp:
            return await dicomnet(
                "echo", "--connect-timeout", LONG, "--acse-timeout", LONG,
                "--dimse-timeout", "1", "127.0.0.1", str(scp.port),
            )  # fmt: skip

    code, err, elapsed = asyncio.run(scenario())
    assert code == 1
    assert "first_response timeout after 1 s" in err, err
    assert elapsed < 20


def test_timeout_sets_all_three() -> None:
    async def scenario() -> tuple[int, str, float]:
        async with MisbehavingSCP(Behaviour(never_respond=True)) as scp:
            return await dicomnet("echo", "--timeout", "1", "127.0.0.1", str(scp.port))

    code, err, _ = asyncio.run(scenario())
    assert code == 1 and "first_response timeout after 1 s" in err, err
