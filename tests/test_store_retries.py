"""The retrying sender: a peer that is down for a while is waited for, not given up on.

``store_files(retries=N)`` bounds the attempts in a row that get no file
answered, and waits longer between them. A load balancer with no healthy
server yet accepts a connection and closes it at once: without the wait,
every attempt would be spent within a millisecond and every file reported
failed. An association that moves files before it breaks starts the count
again, so a long run over a flaky link is not ended by breaks spread over
hours.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from dicomnet.net import bulk_store
from dicomnet.net.bulk_store import StoreOutcome, collect_files, retry_delay, store_files
from dicomnet.net.listener import Listener
from dicomnet.testing.scp import Behaviour, MisbehavingSCP

from factory import ct_dataset, write_part10


def make_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    return [write_part10(ct_dataset(i, pixels=4), folder / f"{i:03d}.dcm") for i in range(count)]


def test_the_wait_grows_from_nothing_to_its_ceiling_with_jitter() -> None:
    assert retry_delay(1) == 0.0  # the first retry is at once: a node died, try another
    for failures in range(2, 12):
        first, most = bulk_store.RETRY_DELAY_FIRST, bulk_store.RETRY_DELAY_MAX
        ceiling = min(first * 2.0 ** (failures - 2), most)
        waits = {retry_delay(failures) for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (failures, waits)
        assert len(waits) > 1  # jitter: workers retrying together spread out
    assert max(retry_delay(40) for _ in range(50)) <= bulk_store.RETRY_DELAY_MAX


async def closing_then_serving(closed: int, target: int) -> tuple[asyncio.Server, list[str]]:
    """A TCP front on loopback that closes its first ``closed`` connections at once
    (a balancer with no healthy server), then relays to ``target``."""
    seen: list[str] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(seen) < closed:
            seen.append("closed")
            writer.transport.abort()
            return
        seen.append("relayed")
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        try:
            await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))
        except ConnectionError:
            pass
        finally:
            up_writer.transport.abort()
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, seen


async def store_through(server: asyncio.Server, folder: Path, retries: int) -> StoreOutcome:
    """``store_files`` of ``folder`` into ``server``, which is closed afterwards."""
    async with server:
        jobs, _ = collect_files([folder], recursive=True)
        return await store_files(
            "127.0.0.1", server.sockets[0].getsockname()[1], jobs, retries=retries
        )


def test_a_peer_down_for_several_attempts_is_waited_for(tmp_path: Path) -> None:
    make_files(tmp_path / "in", 8)
    stored: list[str] = []

    async def scenario() -> tuple[StoreOutcome, list[str]]:
        listener = Listener("STORE", accept_any_storage=True)

        async def on_store(request: object) -> int:
            stored.append(request.message.affected_sop_instance_uid)  # type: ignore[attr-defined]
            return 0x0000

        listener.on_c_store(on_store)
        await listener.listen("127.0.0.1", 0, 4)
        async with listener:
            server, seen = await closing_then_serving(4, listener.port)
            return await store_through(server, tmp_path / "in", 5), seen

    outcome, seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert outcome.ok, outcome.failed
    assert len(outcome.succeeded) == len(stored) == 8
    assert seen == ["closed"] * 4 + ["relayed"]


def test_attempts_without_progress_run_out(tmp_path: Path) -> None:
    make_files(tmp_path / "in", 4)

    async def scenario() -> tuple[StoreOutcome, list[str]]:
        server, seen = await closing_then_serving(100, 9)  # never relays
        return await store_through(server, tmp_path / "in", 3), seen

    outcome, seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen == ["closed"] * 4  # the first attempt and three retries
    assert not outcome.succeeded
    assert len(outcome.failed) == 4
    assert all(error.startswith("association failed") for _, error in outcome.failed)


def test_an_association_that_moved_files_starts_the_count_again(tmp_path: Path) -> None:
    """Every association breaks after one answer; one retry each is enough for all."""
    make_files(tmp_path / "in", 5)

    async def scenario() -> tuple[StoreOutcome, int, int]:
        async with MisbehavingSCP(Behaviour(abort_after_requests=1)) as scp:
            jobs, _ = collect_files([tmp_path / "in"], recursive=True)
            outcome = await store_files(
                "127.0.0.1", scp.port, jobs, window=1, retries=1, called_ae_title="ANY"
            )
            with contextlib.suppress(Exception):
                await scp.close()
            return outcome, scp.connections, len(scp.requests)

    outcome, connections, requests = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert outcome.ok, outcome.failed
    assert len(outcome.succeeded) == 5
    assert connections == 5  # one answered C-STORE per association
    assert requests == 9  # each association but the last also saw the one it aborted on
