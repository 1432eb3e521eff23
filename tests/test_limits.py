"""Listener limits: associations per calling AE title and per address, idle and slow peers."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from dicomnet.errors import DicomNetError
from dicomnet.net import client
from dicomnet.net.listener import Listener, ListenerLimits

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


def test_a_peer_that_reads_nothing_is_dropped_after_the_write_timeout() -> None:
    from dicomnet.core.dimse import CommandField
    from dicomnet.core.negotiation import SupportedContext
    from dicomnet.testing import RawPeer, raw

    find = "1.2.840.10008.5.1.4.1.2.2.1"
    blob = b"\x10\x00\x10\x00" + (8000).to_bytes(4, "little") + b"A" * 8000

    async def flood(request):  # pending responses until the peer stops reading
        for _ in range(100_000):
            yield 0xFF00, blob

    async def scenario() -> float:
        limits = ListenerLimits(write_timeout=1.0, idle_timeout=60)
        contexts = [SupportedContext(find, ("1.2.840.10008.1.2",))]
        listener = Listener("SCP", limits=limits, supported_contexts=contexts)
        listener.handle(CommandField.C_FIND_RQ, flood)
        async with listener:
            await listener.listen("127.0.0.1", 0)
            peer = await RawPeer.connect("127.0.0.1", listener.port)
            await peer.associate([raw.presentation_context(1, find, ["1.2.840.10008.1.2"])])
            await peer.send(
                raw.p_data(raw.pdv(1, 0x03, raw.c_find_rq(find)), raw.pdv(1, 0x02, b""))
            )
            started = time.monotonic()  # we read nothing from here on
            for _ in range(300):
                if not listener.associations:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            assert not listener.associations, "the stalled association is still there"
            peer.close()
            return elapsed

    assert run(scenario()) < 20


def test_size_and_timeout_limits_reach_the_listener_from_toml(tmp_path) -> None:
    from dicomnet.cli.listen_service import ServiceConfig, _limits, load_config

    settings = tmp_path / "dicomnet.toml"
    settings.write_text(
        "[listen]\n"
        'max-dataset-size = "2G"\n'
        "max-buffered-dataset-size = 1048576\n"
        "max-pdu-length = 65536\n"
        "max-presentation-contexts = 32\n"
        "artim-timeout = 5\n"
        "tls-handshake-timeout = 3\n"
        "dimse-timeout = 20\n"
        "write-timeout = 15\n"
    )
    limits = _limits(ServiceConfig(**load_config(settings)))
    assert limits.max_dataset_size == 2 << 30 and limits.max_buffered_dataset_size == 1 << 20
    assert limits.max_pdu_length == 65536 and limits.max_presentation_contexts == 32
    assert (limits.artim_timeout, limits.tls_handshake_timeout) == (5, 3)
    timeouts = limits.request_timeouts()
    assert (timeouts.first_response, timeouts.between_responses, timeouts.send) == (20, 20, 15)
    listener = Listener("SCP", limits=limits)
    assert listener.policy.max_presentation_contexts == 32
    assert listener.timeouts.first_response == 20


def test_listen_flags_for_every_limit() -> None:
    from click.testing import CliRunner

    from dicomnet.cli.main import main

    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["listen", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--max-associations ",
        "--max-associations-per-ae",
        "--max-associations-per-address",
        "--max-pdu-length",
        "--max-dataset-size",
        "--max-buffered-dataset-size",
        "--max-presentation-contexts",
        "--artim-timeout",
        "--tls-handshake-timeout",
        "--idle-timeout",
        "--dimse-timeout",
        "--write-timeout",
    ):
        assert flag in result.output, flag
    bad = CliRunner().invoke(main, ["listen", "--max-dataset-size", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.output
