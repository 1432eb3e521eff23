"""PDU framing by PDUReader (PS3.8 9.3), on both codecs.

The reader is fed the way a TCP stream arrives: split at any byte, several
PDUs per read, one byte at a time, and through the get_buffer/buffer_updated
pair that asyncio.BufferedProtocol uses. Every limit is checked from the
6-byte header alone.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from dicomnet.core.pdu import DEFAULT_MAX_PDU_LENGTH, UNLIMITED_RECEIVE_CAP
from dicomnet.errors import AbortReason, PDUError, PDUTooLarge, ProtocolError, UnrecognizedPDU

RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")
RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")
ABORT = bytes.fromhex("07 00 00000004 0000 02 06")  # source 2, reason 6
PDATA = bytes.fromhex(
    "04 00 0000000c"  # P-DATA-TF, body of 12 bytes
    "00000008 01 03"  # PDV item-length 8, context 1, last command fragment
    "0102030405 06"  # 6 bytes of fragment
)


def header(pdu_type: int, length: int) -> bytes:
    """A PDU header: type, reserved, 32-bit big-endian length."""
    return bytes((pdu_type, 0)) + length.to_bytes(4, "big")


def pdata(size: int) -> bytes:
    """A P-DATA-TF with one PDV of ``size`` bytes of patterned fragment."""
    fragment = bytes(i & 0xFF for i in range(size))
    return header(4, size + 6) + (size + 2).to_bytes(4, "big") + b"\x01\x02" + fragment


def drain(reader: object) -> list[tuple[int, bytes]]:
    """Every complete PDU the reader holds, copied out of its buffer."""
    out = []
    for _ in range(10_000):
        item = reader.next_pdu()  # type: ignore[attr-defined]
        if item is None:
            return out
        out.append((item[0], bytes(item[1])))
    raise AssertionError("next_pdu never returned None")


def write_through_buffer(reader: object, data: bytes, chunk: int) -> list[tuple[int, bytes]]:
    """Deliver ``data`` as asyncio does: get_buffer, write into the view, buffer_updated."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        view = reader.get_buffer(-1)  # type: ignore[attr-defined]
        assert len(view) >= 1
        n = min(len(view), chunk, len(data) - offset)
        view[:n] = data[offset : offset + n]
        reader.buffer_updated(n)  # type: ignore[attr-defined]
        offset += n
        out.extend(drain(reader))
    return out


def test_single_release_rq(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(RELEASE_RQ)
    pdu_type, body = reader.next_pdu()
    assert pdu_type == 0x05
    assert isinstance(body, memoryview)
    assert bytes(body) == bytes(4)
    assert reader.next_pdu() is None
    assert reader.pending == 0


def test_header_only_waits(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(RELEASE_RQ[:6])
    assert reader.next_pdu() is None
    assert reader.pending == 6


def test_empty_reader_and_empty_feed(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    assert reader.next_pdu() is None
    reader.feed(b"")
    assert reader.next_pdu() is None
    assert reader.pending == 0


def test_split_at_every_byte_offset(codec: ModuleType) -> None:
    stream = PDATA + RELEASE_RQ + pdata(300) + ABORT
    expected = drain_all(codec, stream)
    assert [t for t, _ in expected] == [4, 5, 4, 7]
    for cut in range(len(stream) + 1):
        reader = codec.PDUReader()
        reader.feed(stream[:cut])
        got = drain(reader)
        reader.feed(stream[cut:])
        got += drain(reader)
        assert got == expected, cut


def drain_all(codec: ModuleType, stream: bytes) -> list[tuple[int, bytes]]:
    reader = codec.PDUReader()
    reader.feed(stream)
    return drain(reader)


def test_one_byte_at_a_time(codec: ModuleType) -> None:
    stream = RELEASE_RQ + pdata(40) + RELEASE_RP
    reader = codec.PDUReader()
    got = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        got += drain(reader)
    assert got == [(5, bytes(4)), (4, pdata(40)[6:]), (6, bytes(4))]
    assert reader.pending == 0


def test_three_pdus_in_one_feed(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(PDATA + PDATA + PDATA)
    assert drain(reader) == [(4, PDATA[6:])] * 3


def test_associate_rq_and_pdata_coalesced(codec: ModuleType) -> None:
    rq_body = bytes(68) + bytes.fromhex("10 00 0003") + b"1.2"
    rq = header(1, len(rq_body)) + rq_body
    reader = codec.PDUReader()
    reader.feed(rq + PDATA[:9])
    assert drain(reader) == [(1, rq_body)]
    assert reader.pending == 9
    reader.feed(PDATA[9:])
    assert drain(reader) == [(4, PDATA[6:])]


def test_views_stay_valid_until_next_feed(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(PDATA + ABORT)
    first = reader.next_pdu()
    second = reader.next_pdu()
    assert bytes(first[1]) == PDATA[6:]
    assert bytes(second[1]) == ABORT[6:]


def test_pending_counts_only_incomplete_bytes(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(RELEASE_RQ + RELEASE_RP + PDATA[:3])
    assert reader.pending == 3
    drain(reader)
    assert reader.pending == 3


def test_feed_accepts_any_buffer(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(bytearray(RELEASE_RQ))
    reader.feed(memoryview(ABORT))
    assert drain(reader) == [(5, bytes(4)), (7, ABORT[6:])]


# -- asyncio's BufferedProtocol path -----------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_get_buffer_path(codec: ModuleType, chunk: int) -> None:
    stream = RELEASE_RQ + pdata(70_000) + PDATA + pdata(200_000) + ABORT
    reader = codec.PDUReader(max_pdu_length=DEFAULT_MAX_PDU_LENGTH)
    got = write_through_buffer(reader, stream, chunk)
    assert got == drain_all(codec, stream)
    assert [t for t, _ in got] == [5, 4, 4, 4, 7]


@pytest.mark.parametrize("sizehint", [-1, 0, 1, 100_000_000])
def test_get_buffer_ignores_sizehint(codec: ModuleType, sizehint: int) -> None:
    reader = codec.PDUReader()
    view = reader.get_buffer(sizehint)
    assert isinstance(view, memoryview)
    assert not view.readonly
    assert 1 <= len(view) <= 4 << 20


def test_get_buffer_makes_room_for_a_checked_pdu(codec: ModuleType) -> None:
    reader = codec.PDUReader(max_pdu_length=1 << 20)
    big = pdata(500_000)
    view = reader.get_buffer(-1)
    view[:10] = big[:10]
    reader.buffer_updated(10)
    assert reader.next_pdu() is None
    view = reader.get_buffer(-1)
    assert len(view) >= len(big) - 10
    view[: len(big) - 10] = big[10:]
    reader.buffer_updated(len(big) - 10)
    assert drain(reader) == [(4, big[6:])]


def test_get_buffer_compacts_after_many_small_pdus(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    stream = RELEASE_RQ * 50_000  # 500 kB of 10-byte PDUs through a 64 kB buffer
    got = write_through_buffer(reader, stream, 1 << 20)
    assert len(got) == 50_000


def test_buffer_updated_rejects_more_than_the_view(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    view = reader.get_buffer(-1)
    with pytest.raises(ValueError):
        reader.buffer_updated(len(view) + 1)
    with pytest.raises(ValueError):
        reader.buffer_updated(-1)


# -- limits from the header alone ---------------------------------------------------


def test_pdata_length_ffffffff_rejected_from_header(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(header(4, 0xFFFFFFFF) + bytes(10))
    with pytest.raises(PDUTooLarge) as caught:
        reader.next_pdu()
    assert caught.value.abort_source == 2


def test_pdata_too_large_through_get_buffer(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    view = reader.get_buffer(-1)
    view[:16] = header(4, 0xFFFFFFFF) + bytes(10)
    reader.buffer_updated(16)
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


@pytest.mark.parametrize("length", [0x80000000, 0x80FFFFFF, 0xFFFFFFFE, 0xFFFFFFFF])
@pytest.mark.parametrize("pdu_type", [1, 2, 4])
def test_top_bit_lengths_are_unsigned_and_too_large(
    codec: ModuleType, pdu_type: int, length: int
) -> None:
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(header(pdu_type, length))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0x80000000, 0xFFFFFFFF])
def test_top_bit_lengths_on_fixed_pdus(codec: ModuleType, pdu_type: int, length: int) -> None:
    reader = codec.PDUReader()
    reader.feed(header(pdu_type, length))
    with pytest.raises(PDUError):
        reader.next_pdu()


def test_pdata_at_max_is_accepted_and_one_more_is_not(codec: ModuleType) -> None:
    reader = codec.PDUReader(max_pdu_length=4096)
    pdu = pdata(4096 - 6)
    assert len(pdu) == 4096 + 6
    reader.feed(pdu)
    assert drain(reader) == [(4, pdu[6:])]
    reader.feed(header(4, 4097))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


def test_max_pdu_length_is_writable(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    assert reader.max_pdu_length == DEFAULT_MAX_PDU_LENGTH
    reader.max_pdu_length = 16
    assert reader.max_pdu_length == 16
    reader.feed(header(4, 17))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


def test_unlimited_max_still_caps(codec: ModuleType) -> None:
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(header(4, UNLIMITED_RECEIVE_CAP))
    assert reader.next_pdu() is None
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(header(4, UNLIMITED_RECEIVE_CAP + 1))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


@pytest.mark.parametrize("pdu_type", [1, 2])
def test_associate_length_cap(codec: ModuleType, pdu_type: int) -> None:
    reader = codec.PDUReader(max_associate_length=1000)
    reader.feed(header(pdu_type, 1000))
    assert reader.next_pdu() is None
    reader = codec.PDUReader(max_associate_length=1000)
    reader.feed(header(pdu_type, 1001))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


def test_associate_64_mib_refused_by_default(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(header(1, 64 << 20) + bytes(100))
    with pytest.raises(PDUTooLarge):
        reader.next_pdu()


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 2, 6])
def test_fixed_size_pdus_with_wrong_length(codec: ModuleType, pdu_type: int, length: int) -> None:
    reader = codec.PDUReader()
    reader.feed(header(pdu_type, length) + bytes(length))
    with pytest.raises(PDUError) as caught:
        reader.next_pdu()
    assert type(caught.value) is PDUError
    assert caught.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("first", [0x00, 0x08, 0x16, 0x47, 0x53, 0xFF])
def test_unrecognized_pdu_type(codec: ModuleType, first: int) -> None:
    reader = codec.PDUReader()
    reader.feed(bytes((first, 0)) + bytes.fromhex("00000002") + b"\x00\x00")
    with pytest.raises(UnrecognizedPDU) as caught:
        reader.next_pdu()
    assert caught.value.abort_reason == AbortReason.UNRECOGNIZED_PDU


def test_http_request_is_unrecognized(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(UnrecognizedPDU):
        reader.next_pdu()


def test_unrecognized_type_found_from_header_by_get_buffer(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    view = reader.get_buffer(-1)
    view[:6] = bytes.fromhex("08 00 7fffffff")
    reader.buffer_updated(6)
    with pytest.raises(UnrecognizedPDU):
        reader.get_buffer(-1)


def test_reader_is_poisoned_after_an_error(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(RELEASE_RQ + bytes.fromhex("08 00 00000000"))
    assert reader.next_pdu() == (5, memoryview(bytes(4)))
    with pytest.raises(UnrecognizedPDU) as caught:
        reader.next_pdu()
    first = caught.value
    for call in (
        reader.next_pdu,
        lambda: reader.feed(RELEASE_RQ),
        lambda: reader.get_buffer(-1),
        lambda: reader.buffer_updated(0),
        reader.next_pdu,
    ):
        with pytest.raises(ProtocolError) as again:
            call()
        assert again.value is first


def test_negative_limits_are_local_errors(codec: ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.PDUReader(max_pdu_length=-1)
    reader = codec.PDUReader()
    with pytest.raises(ValueError):
        reader.max_pdu_length = -1
