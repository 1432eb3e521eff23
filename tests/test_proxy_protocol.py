"""PROXY protocol v1 and v2 headers, parsed without I/O (dicomnet.core.proxy_protocol)."""

from __future__ import annotations

import struct

import pytest

from dicomnet.core.proxy_protocol import (
    MAX_V1_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    looks_like_header,
    parse_proxy_header,
)

ASSOCIATE_RQ_START = b"\x01\x00\x00\x00\x00\xcd\x00\x01"
TLS_CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def v2(command: int, family: int, body: bytes) -> bytes:
    """A version 2 header built field by field from the specification's layout."""
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tcp4_body(src: str, dst: str, sport: int, dport: int) -> bytes:
    pack = [bytes(int(part) for part in address.split(".")) for address in (src, dst)]
    return pack[0] + pack[1] + struct.pack("!HH", sport, dport)


V1_TCP4 = b"PROXY TCP4 192.0.2.7 198.51.100.1 50123 104\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 11112\r\n"
V2_TCP4 = v2(1, 0x11, tcp4_body("192.0.2.7", "198.51.100.1", 50123, 104))
V2_TCP6 = v2(
    1,
    0x21,
    bytes.fromhex("20010db8000000000000000000000007")
    + bytes.fromhex("20010db8000000000000000000000001")
    + struct.pack("!HH", 40000, 11112),
)
V2_LOCAL = v2(0, 0x00, b"")


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (V1_TCP4, ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.7", 50123), ("198.51.100.1", 104), 45)),
        (
            V1_TCP6,
            ProxyHeader(1, "PROXY", "TCP6", ("2001:db8::7", 65535), ("2001:db8::1", 11112), 48),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1, "PROXY", "UNKNOWN", None, None, 15)),
        (
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            ProxyHeader(1, "PROXY", "UNKNOWN", None, None, 35),
        ),
        (V2_TCP4, ProxyHeader(2, "PROXY", "TCP4", ("192.0.2.7", 50123), ("198.51.100.1", 104), 28)),
        (
            V2_TCP6,
            ProxyHeader(2, "PROXY", "TCP6", ("2001:db8::7", 40000), ("2001:db8::1", 11112), 52),
        ),
        (V2_LOCAL, ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, 16)),
        # A LOCAL health check may still carry addresses: they are not the client's.
        (
            v2(0, 0x11, tcp4_body("127.0.0.1", "127.0.0.1", 1, 2)),
            ProxyHeader(2, "LOCAL", "TCP4", None, None, 28),
        ),
        # AF_UNIX and datagrams relay no TCP client: the connection's addresses stand.
        (v2(1, 0x31, b"\x00" * 216), ProxyHeader(2, "PROXY", "UNIX", None, None, 232)),
        (
            v2(1, 0x12, tcp4_body("10.0.0.1", "10.0.0.2", 1, 2)),
            ProxyHeader(2, "PROXY", "UNKNOWN", None, None, 28),
        ),
    ],
    ids=[
        "v1-tcp4",
        "v1-tcp6",
        "v1-unknown",
        "v1-unknown-addresses",
        "v2-tcp4",
        "v2-tcp6",
        "v2-local",
        "v2-local-addresses",
        "v2-unix",
        "v2-udp",
    ],
)
def test_valid_headers(wire: bytes, expected: ProxyHeader) -> None:
    assert parse_proxy_header(wire + ASSOCIATE_RQ_START) == expected
    assert expected.length == len(wire)


def test_v2_tlvs_are_kept_in_order() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\x20\x00\x05\x01\x00\x00\x00\x00"
    header = parse_proxy_header(v2(1, 0x11, tcp4_body("10.1.2.3", "10.0.0.1", 7, 8) + tlvs))
    assert header is not None
    assert header.source == ("10.1.2.3", 7)
    assert header.tlvs == ((0x01, b"h2"), (0x04, b""), (0x20, b"\x01\x00\x00\x00\x00"))


@pytest.mark.parametrize("wire", [V1_TCP4, V1_TCP6, V2_TCP4, V2_TCP6, V2_LOCAL])
def test_truncated_header_needs_more_at_every_length(wire: bytes) -> None:
    for cut in range(len(wire)):
        assert parse_proxy_header(wire[:cut]) is None, cut
    assert parse_proxy_header(wire) is not None


@pytest.mark.parametrize("wire", [V1_TCP4, V1_TCP6, b"PROXY UNKNOWN\r\n", V2_TCP4, V2_TCP6])
def test_reader_never_reads_past_the_header(wire: bytes) -> None:
    """Reading what bytes_wanted asks for ends exactly at the header's last byte."""
    stream = wire + ASSOCIATE_RQ_START
    reader = ProxyHeaderReader()
    offset = 0
    reads = 0
    while reader.header is None:
        wanted = reader.bytes_wanted()
        assert 1 <= wanted <= len(wire) - offset
        reader.feed(stream[offset : offset + wanted])
        offset += wanted
        reads += 1
        assert reads <= 120
    assert offset == len(wire)
    assert reader.bytes_wanted() == 0
    assert reader.header == parse_proxy_header(wire)


@pytest.mark.parametrize(
    "wire",
    [
        ASSOCIATE_RQ_START,
        TLS_CLIENT_HELLO_START,
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.999 1.2.3.5 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n",
        b"PROXY TCP4 1.2.3.4\r1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 \xb9 2\r\n",
        b"PROXYTCP4",
        V2_SIGNATURE[:5] + b"X",
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),  # version 1 in the v2 layout
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12),  # family 4
        V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12),  # transport 3
        v2(1, 0x11, bytes(11)),  # IPv4 block one byte short
        v2(1, 0x21, bytes(12)),  # IPv6 block with IPv4's length
        v2(1, 0x11, tcp4_body("1.2.3.4", "1.2.3.5", 1, 2) + b"\x01\x00"),  # TLV cut short
        v2(1, 0x11, tcp4_body("1.2.3.4", "1.2.3.5", 1, 2) + b"\x01\x00\x09ab"),  # TLV overruns
    ],
)
def test_garbage_is_refused(wire: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(wire)


def test_garbage_is_refused_by_the_reader_as_soon_as_it_shows() -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyProtocolError):
        reader.feed(ASSOCIATE_RQ_START[:1])
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROX") is None
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"Z")


def test_oversize_v1_line_is_refused() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - 14)
    assert len(line) == MAX_V1_LENGTH
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse_proxy_header(line)
    assert parse_proxy_header(line[:-1]) is None
    # The longest legal line (two full IPv6 addresses) fits.
    longest = (
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    )
    assert len(longest) <= MAX_V1_LENGTH
    assert parse_proxy_header(longest) is not None


def test_oversize_v2_header_is_refused_from_its_length_field() -> None:
    fixed = V2_SIGNATURE + b"\x21\x11\xff\xff"
    with pytest.raises(ProxyProtocolError, match="exceeds"):
        parse_proxy_header(fixed)
    reader = ProxyHeaderReader(max_v2_length=64)
    reader.feed(fixed[:15])
    with pytest.raises(ProxyProtocolError, match="exceeds 64"):
        reader.feed(fixed[15:])


def test_first_byte_tells_a_header_from_dicom_and_tls() -> None:
    for wire in (V1_TCP4, V2_TCP4):
        assert looks_like_header(wire[:1])
        assert looks_like_header(wire)
    for first_pdu_type in range(0x01, 0x08):
        assert not looks_like_header(bytes([first_pdu_type]))
    assert not looks_like_header(TLS_CLIENT_HELLO_START)
    assert not looks_like_header(b"")
    assert not looks_like_header(b"PRAXY")


def test_parser_imports_no_io() -> None:
    """Sans-IO: importing the parser brings in no event loop, socket or TLS."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys; before = set(sys.modules); import dicomnet.core.proxy_protocol; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    added = set(json.loads(subprocess.check_output([sys.executable, "-c", probe], text=True)))
    assert not added & {"asyncio", "socket", "_socket", "ssl", "_ssl", "selectors", "threading"}
