"""Listener limits: associations per calling AE title and per address, idle and slow peers."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from dicomnet import client
from dicomnet.errors import DicomNetError
from dicomnet.server import Listener, ListenerLimits

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(port: int, calling: str = "SCU"):
    return client.connect(
        "127.0.0.1", port, calling_ae_title=calling, contexts=[(VERIFICATION, [EXPLICIT])]
    )


async def rejected(port: int, calling: str) -> bool:
    try:
        async with connect(port, calling) as assoc:
            await assoc.echo()
    except DicomNetError as exc:
        assert "rejected" in str(exc)
        return True
    return False


def test_associations_per_calling_ae_title_are_capped() -> None:
    async def scenario() -> None:
        limits = ListenerLimits(max_associations_per_calling_ae=2)
        async with Listener("SCP", limits=limits) as listener:
            await listener.listen("127.0.0.1", 0)
            async with connect(listener.port, "MODALITY"), connect(listener.port, "MODALITY"):
                assert await rejected(listener.port, "MODALITY")
                assert not await rejected(listener.port, "OTHER")  # other titles still served
            await asyncio.sleep(0.1)  # both released: the title has room again
            assert not await rejected(listener.port, "MODALITY")

    run(scenario())


def test_associations_per_peer_address_are_capped() -> None:
    async def scenario() -> None:
        limits = ListenerLimits(max_associations_per_address=1)
        async with Listener("SCP", limits=limits) as listener:
            await listener.listen("127.0.0.1", 0)
            async with connect(listener.port, "A") as first:
                assert await rejected(listener.port, "B")  # same address, another title
                assert (await first.echo()).status == 0
            await asyncio.sleep(0.1)
            assert not await rejected(listener.port, "B")

    run(scenario())


def test_an_idle_association_is_aborted() -> None:
    async def scenario() -> float:
        limits = ListenerLimits(idle_timeout=0.5)
        async with Listener("SCP", limits=limits) as listener:
            await listener.listen("127.0.0.1", 0)
            async with connect(listener.port) as assoc:
                assert (await assoc.echo()).status == 0
                start = time.monotonic()
                await asyncio.wait_for(asyncio.shield(assoc.finished), 10)
                took = time.monotonic() - start
                with pytest.raises(DicomNetError):
                    await assoc.echo()
            for _ in range(100):  # the listener frees the slot once the socket closes
                if listener.association_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert listener.association_count == 0
            return took

    took = run(scenario())
    assert 0.4 <= took < 5


def test_a_peer_trickling_bytes_is_cut_off_too() -> None:
    """Slowloris: a byte now and then, never a whole PDU, is no activity."""

    async def scenario() -> int:
        limits = ListenerLimits(idle_timeout=0.6)
        async with Listener("SCP", limits=limits) as listener:
            await listener.listen("127.0.0.1", 0)
            async with connect(listener.port) as assoc:
                transport = assoc.network_stream
                assert transport is not None
                transport.write(struct.pack(">BBL", 0x04, 0, 1000))  # P-DATA-TF of 1000 bytes
                sent = 0
                for _ in range(50):  # bounded: at most 5 s of trickling
                    if assoc.finished.done():
                        break
                    transport.write(b"\x00")
                    sent += 1
                    await asyncio.sleep(0.1)
                assert assoc.finished.done(), "the trickling peer should have been aborted"
                return sent

    assert run(scenario()) < 40


def test_a_busy_association_is_not_idle() -> None:
    """A request being served keeps its association, however long it takes."""

    async def scenario() -> int:
        limits = ListenerLimits(idle_timeout=0.3)
        listener = Listener("SCP", limits=limits)

        async def slow_echo(request) -> int:
            await asyncio.sleep(1.0)
            return 0

        listener.on_c_echo(slow_echo)
        async with listener:
            await listener.listen("127.0.0.1", 0)
            async with connect(listener.port) as assoc:
                return int((await assoc.echo()).status)

    assert run(scenario()) == 0
