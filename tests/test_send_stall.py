"""The client's send timer is a stall timer (no byte taken for N s), with an optional total.

A peer reading at about 5 MB/s (DCMTK storescp behind a throttling proxy)
receives a 50 MB C-STORE under a 2 s stall timer: the whole send takes far
longer than 2 s, but bytes keep moving, so it succeeds. A peer that stops
reading makes the stall timer fire: ``on_request_timed_out`` is called, and
the A-ABORT goes out once the socket takes it (within a short bound), then
the connection closes; ``release()`` afterwards returns at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from dicomnet.errors import AssociationAborted, RequestTimeout
from dicomnet.net import client
from dicomnet.net.client import ClientConnection
from dicomnet.net.listener import Listener
from dicomnet.net.requests import RequestTimeouts
from dicomnet.services.discard import DiscardStorage
from throttle import ThrottlingProxy

from factory import ct_dataset, dataset_bytes, write_part10
from peers import dcmtk_server, free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
SIZE = 50_000_000


def big_file(folder: Path, size: int = SIZE) -> Path:
    ds = ct_dataset(0, pixels=2)
    side = int((size // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes(range(256)) * (side * side * 2 // 256) + bytes(side * side * 2 % 256)
    return write_part10(ds, folder / "big.dcm")


def run(coro: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.interop
@pytest.mark.slow  # 10 s of throttled reading
def test_a_peer_reading_at_5_mb_s_receives_50_mb_under_a_2_s_stall_timer(
    tmp_path: Path,
) -> None:
    path = big_file(tmp_path)
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()

    async def scenario() -> tuple[int, float, int]:
        async with ThrottlingProxy(port, rate=5e6) as proxy:
            started = time.monotonic()
            async with client.connect(
                "127.0.0.1",
                proxy.port,
                contexts=[(CT, [EXPLICIT])],
                max_pdu_length=0,
                timeouts=RequestTimeouts(send=2.0, first_response=30.0),
            ) as assoc:
                status = (await assoc.store(path)).status
            return status, time.monotonic() - started, proxy.forwarded

    with dcmtk_server("storescp", ["-od", str(out), "--max-pdu", "131072", str(port)], port):
        status, elapsed, forwarded = run(scenario())
    assert status == 0x0000
    assert forwarded > SIZE
    assert elapsed > 4.0  # the scenario's premise: far longer than the 2 s stall timer
    (received,) = out.iterdir()
    assert dataset_bytes(received) == dataset_bytes(path)


@pytest.mark.interop
@pytest.mark.slow  # waits out a timer
def test_the_optional_total_send_timer_still_limits_the_whole_message(tmp_path: Path) -> None:
    path = big_file(tmp_path, 20_000_000)
    port = free_port()
    timed_out: list[float] = []

    class Watching(ClientConnection):
        def on_request_timed_out(self, request: Any, timeout: float) -> None:
            timed_out.append(timeout)

    async def scenario() -> RequestTimeout:
        async with ThrottlingProxy(port, rate=5e6) as proxy:
            assoc = await client.connect(
                "127.0.0.1",
                proxy.port,
                contexts=[(CT, [EXPLICIT])],
                connection_class=Watching,
                timeouts=RequestTimeouts(send=2.0, send_total=1.0),
            )
            with pytest.raises(RequestTimeout) as info:
                await assoc.store(path)
            await assoc.abort()
            return info.value

    with dcmtk_server("storescp", ["--ignore", str(port)], port):
        error = run(scenario())
    assert error.timer == "send_total" and error.seconds == 1.0
    assert timed_out == [1.0]


def test_after_a_send_stall_the_a_abort_goes_out_and_release_returns_at_once(
    tmp_path: Path,
) -> None:
    path = big_file(tmp_path, 20_000_000)
    ended: list[BaseException | None] = []
    timed_out: list[float] = []

    class Observer:
        def association_ended(self, association: Any, error: BaseException | None) -> None:
            ended.append(error)

    class Watching(ClientConnection):
        def on_request_timed_out(self, request: Any, timeout: float) -> None:
            timed_out.append(timeout)

    async def scenario() -> tuple[RequestTimeout, float]:
        async with Listener("SCP", accept_any_storage=True) as listener:
            DiscardStorage().attach(listener)
            listener.observers.append(Observer())
            await listener.listen("127.0.0.1", 0)
            async with ThrottlingProxy(listener.port, rate=50e6) as proxy:
                assoc = await client.connect(
                    "127.0.0.1",
                    proxy.port,
                    called_ae_title="SCP",
                    contexts=[(CT, [EXPLICIT])],
                    connection_class=Watching,
                    timeouts=RequestTimeouts(send=1.0),
                )
                proxy.stall(2.5)  # the peer reads nothing for 2.5 s: the 1 s stall timer fires
                with pytest.raises(RequestTimeout) as info:
                    await assoc.store(path)
                assert not assoc.can_still_process_pdata_tf
                started = time.monotonic()
                await asyncio.wait_for(assoc.release(), 10)
                returned = time.monotonic() - started
                for _ in range(100):  # the listener sees the A-ABORT once the proxy reads again
                    if ended:
                        break
                    await asyncio.sleep(0.1)
                return info.value, returned

    error, returned = run(scenario())
    assert error.timer == "send" and error.seconds == 1.0
    assert timed_out == [1.0]
    assert returned < 5.0  # not the 30 s release timeout
    (cause,) = ended
    assert isinstance(cause, AssociationAborted), cause
    assert (cause.source, cause.reason) == (0, 0)
