"""A stalled listener judges what its peers did, not what it had read when it stopped.

The process is stopped (SIGSTOP: what a VM pause, a long GC or an fsync
stuck on a dying disk look like from outside) while one association is half
through a C-STORE and a second connection has not yet sent its request. Both
peers send their next bytes in time; the process resumes after its ARTIM and
idle deadlines have passed. The bytes were in the socket before either
deadline, so neither peer may be aborted or closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dicomnet.dataset.encoding import encode_dataset
from dicomnet.testing import RawPeer, raw

from factory import ct_dataset

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
ARTIM, IDLE, STALL = 2.0, 4.0, 6.0


def store_pdus(uid: str, data: bytes) -> list[bytes]:
    """The C-STORE command, then its dataset in 8,000-byte P-DATA-TFs (context 1)."""
    pdus = [raw.p_data(raw.pdv(1, 0x03, raw.c_store_rq(CT, uid)))]
    for start in range(0, len(data), 8000):
        last = start + 8000 >= len(data)
        pdus.append(raw.p_data(raw.pdv(1, 0x02 if last else 0x00, data[start : start + 8000])))
    return pdus


MAIN = "from dicomnet.cli.main import main; main()"
LOOPS = {"asyncio": "import sys; sys.modules['uvloop'] = None; " + MAIN, "uvloop": MAIN}
"""``dicomnet listen`` on either event loop: they order timers and reads differently."""


@pytest.mark.slow  # 7 s each on the listener's timers
@pytest.mark.parametrize(
    ("loop", "gate"), [("asyncio", False), ("uvloop", False), ("asyncio", True)]
)
def test_a_stalled_listener_counts_what_arrived_before_its_deadlines(
    tmp_path: Path, loop: str, gate: bool
) -> None:
    """``gate``: behind the PROXY-protocol accept gate (a trusted address sending
    no header is served directly), whose own timer then judges the waiting peer."""
    command = [sys.executable, "-c", LOOPS[loop], "listen", "--host", "127.0.0.1", "--port", "0"]
    if gate:
        command += ["--proxy-protocol", "--trusted-proxy", "127.0.0.1"]
    command += ["--dir", str(tmp_path / "archive"), "--fsync", "never"]
    command += ["--artim-timeout", str(ARTIM), "--idle-timeout", str(IDLE)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if loop == "uvloop":
        import uvloop  # noqa: F401  (installed by scripts/test.sh: the run must not fall back)
    ds = ct_dataset(0, pixels=128)  # 32 KB of pixels: five P-DATA-TFs
    pdus = store_pdus(str(ds.SOPInstanceUID), encode_dataset(ds, EXPLICIT))

    async def scenario(port: int) -> tuple[int, int]:
        storing = await RawPeer.connect("127.0.0.1", port)
        await storing.associate([raw.presentation_context(1, CT, [EXPLICIT])])
        await storing.send(b"".join(pdus[:3]))  # the command and half the dataset
        waiting = await RawPeer.connect("127.0.0.1", port)  # no request yet
        await asyncio.sleep(0.2)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(0.5)
            await storing.send(b"".join(pdus[3:]))  # in time: long before either deadline
            await waiting.send(
                raw.associate_rq("DICOMNET", contexts=[raw.presentation_context(1, CT, [EXPLICIT])])
            )
            await asyncio.sleep(STALL)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        answer = await waiting.read_pdu(timeout=10)
        response = await storing.read_pdu(timeout=10)
        for peer in (storing, waiting):
            await peer.send(raw.release_rq())
            await peer.read_pdu(timeout=5)
            peer.close()
        assert answer is not None, "the waiting connection was closed (ARTIM)"
        assert response is not None, "the storing association was closed"
        assert response.pdu_type == 0x04, f"the storing association got {response!r}"
        return answer.pdu_type, int(response.commands()[0][0x00000900])  # type: ignore[call-overload]

    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:"), line
        answer_type, status = asyncio.run(
            asyncio.wait_for(scenario(int(line.rsplit(":", 1)[1])), 60)
        )
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        _, log = process.communicate(timeout=15)
    assert answer_type == 0x02, f"the waiting connection got PDU type {answer_type:02X}H: {log}"
    assert status == 0x0000, f"C-STORE answered {status:04X}: {log}"
    assert "idle for" not in log and "no association request" not in log, log
    assert list((tmp_path / "archive").rglob(f"{ds.SOPInstanceUID}.dcm"))


def test_peer_moved_sees_unread_bytes_and_room_to_write() -> None:
    from dicomnet.net.transport import peer_moved

    async def scenario() -> list[bool]:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

        async def keep(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)

        server = await asyncio.start_server(keep, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        far = await accepted
        seen = [peer_moved(transport), peer_moved(None)]  # nothing sent; no transport
        transport.pause_reading()  # bytes that arrive now stay in the socket
        far.write(b"\x01\x00\x00\x00\x00\x10")
        await far.drain()
        await asyncio.sleep(0.1)
        seen.append(peer_moved(transport))  # paused on purpose: not the peer's doing
        transport.resume_reading()
        seen.append(peer_moved(transport))  # there and unread: the loop has not run since
        seen.append(peer_moved(transport, writing=True))  # an empty send buffer: room
        transport.close()
        far.close()
        server.close()
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [False, False, False, True, True]
