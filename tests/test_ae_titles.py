"""AE titles padded with NUL bytes (PS3.5 6.2): accepted as DCMTK accepts them.

Some peers pad the 16-byte AE title fields of A-ASSOCIATE-RQ with NULs
instead of spaces. Both codecs strip trailing NULs and spaces on receive, so
``require_called_ae_title`` compares the title itself and logs show it
printable; dicomnet never sends a NUL, since :func:`validate_ae_title`
refuses control characters in what we send.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import ModuleType

import pytest

from dicomnet.core.negotiation import build_request, validate_ae_title
from dicomnet.core.pdu import AssociateAC
from dicomnet.net.listener import Listener
from dicomnet.testing import raw
from dicomnet.testing.peer import RawPeer

from peers import dcmqrscp, free_port

NUL_PADDED = b"DICOMNET".ljust(16, b"\x00")
MIXED = b"STORESCP\x00 \x00  \x00\x00\x00"


def _body(pdu: bytes) -> bytes:
    return pdu[6:]


@pytest.mark.parametrize("called", [NUL_PADDED, MIXED])
def test_both_codecs_strip_trailing_nuls_and_spaces(codec: ModuleType, called: bytes) -> None:
    rq = codec.decode_pdu(0x01, _body(raw.associate_rq(called, b"SCU\x00\x00\x00")))
    assert rq.called_ae_title == called.rstrip(b"\x00 ").decode()
    assert rq.calling_ae_title == "SCU"


def test_a_title_of_nuls_only_is_empty_and_rejected(codec: ModuleType) -> None:
    from dicomnet.core.negotiation import AcceptorPolicy, negotiate_as_acceptor

    rq = codec.decode_pdu(0x01, _body(raw.associate_rq(b"\x00" * 16)))
    assert rq.called_ae_title == ""
    answer = negotiate_as_acceptor(rq, AcceptorPolicy())
    assert (answer.result, answer.source, answer.reason) == (1, 1, 7)


@pytest.mark.parametrize("title", ["PACS\x00", "PACS\x00\x00\x00", "\x00"])
def test_titles_with_nul_are_never_sent(title: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        validate_ae_title(title)
    with pytest.raises(ValueError):
        build_request(title, "DICOMNET", [("1.2.840.10008.1.1", ("1.2.840.10008.1.2",))])


def test_require_called_aet_accepts_a_nul_padded_title(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> AssociateAC:
        listener = Listener("DICOMNET", require_called_ae_title=True)
        await listener.listen("127.0.0.1", 0)
        try:
            async with await RawPeer.connect("127.0.0.1", listener.port) as peer:
                await peer.send(raw.associate_rq(NUL_PADDED, b"NULPEER".ljust(16, b"\x00")))
                pdu = await peer.read_pdu()
                assert pdu is not None and pdu.pdu_type == 0x02, pdu
                ac = pdu.decoded()
                (association,) = [a for a in listener.associations]
                assert association.called_ae_title == "DICOMNET"
                assert association.calling_ae_title == "NULPEER"
                assert association.negotiated.called_ae_title == "DICOMNET"
                await peer.send(raw.release_rq())
                assert (await peer.read_pdu()).pdu_type == 0x06  # type: ignore[union-attr]
                return ac
        finally:
            await listener.close()

    with caplog.at_level(logging.DEBUG, logger="dicomnet"):
        ac = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert isinstance(ac, AssociateAC)
    assert ac.called_ae_title == "DICOMNET"
    assert all("\x00" not in record.getMessage() for record in caplog.records)


def test_titles_are_logged_printable(caplog: pytest.LogCaptureFixture) -> None:
    """The association log (one line per association) shows titles as text,
    even one with a control character inside, which PS3.5 forbids."""
    from dicomnet.services.store_events import AssociationLog

    async def scenario() -> tuple[str, str]:
        listener = Listener("DICOMNET")
        listener.observers.append(AssociationLog())
        await listener.listen("127.0.0.1", 0)
        try:
            async with await RawPeer.connect("127.0.0.1", listener.port) as peer:
                await peer.send(raw.associate_rq(NUL_PADDED, b"BAD\x01PEER\x00\x00\x00"))
                assert (await peer.read_pdu()).pdu_type == 0x02  # type: ignore[union-attr]
                (association,) = list(listener.associations)
                titles = association.calling_ae_title, association.called_ae_title
                await peer.send(raw.release_rq())
                assert (await peer.read_pdu()).pdu_type == 0x06  # type: ignore[union-attr]
                await peer.closed()
            return titles
        finally:
            await listener.close()

    with caplog.at_level(logging.INFO, logger="dicomnet.associations"):
        calling, called = asyncio.run(asyncio.wait_for(scenario(), 20))
    # the values as sent (the per-AE cap's key, the Source AE Title); only logs escape
    assert (calling, called) == ("BAD\x01PEER", "DICOMNET")
    lines = [r.getMessage() for r in caplog.records if r.name == "dicomnet.associations"]
    assert lines and "BAD\\x01PEER -> DICOMNET" in lines[-1]
    assert all(ch.isprintable() for line in lines for ch in line)


@pytest.mark.interop
def test_dcmqrscp_accepts_the_same_bytes(tmp_path: Path) -> None:
    """DCMTK's behaviour, which dicomnet matches: dcmqrscp checks the called
    AE title against its AE table, accepts it NUL-padded and rejects another."""

    async def answer(port: int, called: bytes) -> int:
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send(raw.associate_rq(called, b"NULPEER".ljust(16, b"\x00")))
            pdu = await peer.read_pdu(timeout=10)
            assert pdu is not None
            return pdu.pdu_type

    with dcmqrscp(tmp_path, free_port()) as port:
        assert asyncio.run(answer(port, b"QRSCP".ljust(16, b"\x00"))) == 0x02
        assert asyncio.run(answer(port, b"NOTQRSCP".ljust(16, b"\x00"))) == 0x03


def test_dicomnet_listen_require_called_aet_accepts_a_nul_padded_title(tmp_path: Path) -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1", "--port", "0",
         "--aet", "DICOMNET", "--require-called-aet", "--dir", str(tmp_path / "archive")],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip

    async def answer(port: int, called: bytes) -> int:
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send(raw.associate_rq(called, b"NULPEER".ljust(16, b"\x00")))
            pdu = await peer.read_pdu(timeout=10)
            assert pdu is not None
            return pdu.pdu_type

    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip().rsplit(":", 1)[1])
        assert asyncio.run(answer(port, NUL_PADDED)) == 0x02
        assert asyncio.run(answer(port, b"OTHER".ljust(16, b"\x00"))) == 0x03
    finally:
        process.terminate()
        process.wait(timeout=15)
