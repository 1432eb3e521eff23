"""PROXY protocol headers, versions 1 and 2, without I/O.

Theory of operation
-------------------
A TCP proxy such as HAProxy (``send-proxy`` / ``send-proxy-v2``) opens each
connection to the listener with a header naming the client it relays: its
address and port, and the address and port it reached. The header comes
before the first byte of the relayed stream (here, before the
A-ASSOCIATE-RQ or the TLS ClientHello), once per connection.

Version 1 is one ASCII line, at most 107 bytes with its CRLF::

    PROXY TCP4 192.0.2.7 198.51.100.1 50123 104\\r\\n

Version 2 is binary: a 12-byte signature, a version and command byte
(``0x20`` LOCAL, ``0x21`` PROXY), an address family and transport byte,
a 16-bit length, then that many bytes of addresses and optional TLVs.

:class:`ProxyHeaderReader` consumes bytes in any chunking and, through
:meth:`~ProxyHeaderReader.bytes_wanted`, tells its caller how many more it
can read without reading past the header: the bytes after it belong to the
DICOM (or TLS) stream, which a caller may then hand on untouched. A
``LOCAL`` header (a proxy's own health check) and an address family this
module does not relay (``UNKNOWN``, ``AF_UNIX``, datagrams) carry no
client: :attr:`ProxyHeader.source` is None and the connection's own
addresses stand.

Neither version's first byte (``P``, ``\\r``) is a PDU type of PS3.8
Table 9-1 nor a TLS record type, so one byte tells a header from a DICOM
or TLS stream.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dicomnet.errors import DicomNetError

__all__ = [
    "MAX_V1_LENGTH",
    "MAX_V2_LENGTH",
    "V1_PREFIX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "looks_like_header",
    "parse_proxy_header",
]

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_V1_LENGTH = 107
"""The longest version 1 line, CRLF included (the specification's bound)."""
MAX_V2_LENGTH = 16 + 2048
"""The longest version 2 header accepted: the fixed 16 bytes, the largest
address block (two AF_UNIX paths, 216 bytes) and room for a proxy's TLVs."""

_V2_FIXED = 16
_V1_SHORTEST = len(b"PROXY UNKNOWN\r\n")
_V2_ADDRESS_LENGTHS = {0x1: 12, 0x2: 36, 0x3: 216}
"""Bytes of the address block per family nibble: INET, INET6, UNIX."""


class ProxyProtocolError(DicomNetError, ValueError):
    """Bytes that are not a valid PROXY protocol header; the connection is closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed header.

    Attributes
    ----------
    version : int
        1 or 2.
    command : str
        ``"PROXY"`` (a relayed client) or ``"LOCAL"`` (the proxy's own
        connection, such as a health check; version 2 only).
    family : str
        ``"TCP4"``, ``"TCP6"``, ``"UNIX"`` or ``"UNKNOWN"``.
    source, destination : tuple of (str, int), or None
        The client's address and port, and the address and port it
        connected to; None when the header relays no TCP client.
    length : int
        Bytes the header took on the wire.
    tlvs : tuple of (int, bytes)
        Version 2 type-length-value extensions, in order.
    """

    version: int
    command: str
    family: str
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int
    tlvs: tuple[tuple[int, bytes], ...] = ()


def looks_like_header(first: bytes | bytearray | memoryview) -> bool:
    """Whether a stream starting with ``first`` (one byte or more) may be a header."""
    data = bytes(first[: len(V2_SIGNATURE)])
    return bool(data) and (V1_PREFIX.startswith(data[:6]) or V2_SIGNATURE.startswith(data))


def parse_proxy_header(
    data: bytes | bytearray | memoryview, *, max_v2_length: int = MAX_V2_LENGTH
) -> ProxyHeader | None:
    """The header at the start of ``data``, or None if more bytes are needed.

    Raises
    ------
    ProxyProtocolError
        ``data`` cannot begin a valid header, or the header is longer than
        the bound of its version.
    """
    view = bytes(data[: max(MAX_V1_LENGTH, max_v2_length)])
    if not view:
        return None
    if V2_SIGNATURE.startswith(view[: len(V2_SIGNATURE)]):
        return _parse_v2(view, max_v2_length)
    if V1_PREFIX.startswith(view[: len(V1_PREFIX)]):
        return _parse_v1(view)
    raise ProxyProtocolError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        cr = data.find(b"\r", 0, MAX_V1_LENGTH)
        if b"\n" in data[:MAX_V1_LENGTH] or 0 <= cr < len(data) - 1:
            raise ProxyProtocolError("PROXY v1 line has a bare CR or LF")
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 line longer than {MAX_V1_LENGTH} bytes")
        return None
    length = end + 2
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyProtocolError("PROXY v1 line without a protocol")
    family = parts[1]
    if family == "UNKNOWN":
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, length)
    if family not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"PROXY v1 protocol {family!r} is not TCP4, TCP6 or UNKNOWN")
    if len(parts) != 6:
        raise ProxyProtocolError("PROXY v1 line needs two addresses and two ports")
    version = 4 if family == "TCP4" else 6
    source = (_v1_address(parts[2], version), _v1_port(parts[4]))
    destination = (_v1_address(parts[3], version), _v1_port(parts[5]))
    return ProxyHeader(1, "PROXY", family, source, destination, length)


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 address {text!r} is not an IP address") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 address {text!r} is not IPv{version}")
    return str(address)


def _v1_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is not 0-65535")
    return int(text)


def _parse_v2(data: bytes, max_length: int) -> ProxyHeader | None:
    if len(data) < _V2_FIXED:
        return None
    version_command, family_transport = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 version {version_command >> 4} is not 2")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
    body_length = int.from_bytes(data[14:16], "big")
    length = _V2_FIXED + body_length
    if length > max_length:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes exceeds {max_length}")
    if len(data) < length:
        return None
    body = data[_V2_FIXED:length]
    family_code, transport = family_transport >> 4, family_transport & 0x0F
    if family_code > 3 or transport > 2:
        raise ProxyProtocolError(f"PROXY v2 address family byte 0x{family_transport:02X}")
    address_length = _V2_ADDRESS_LENGTHS.get(family_code, 0)
    if body_length < address_length:
        raise ProxyProtocolError(
            f"PROXY v2 address block of {body_length} bytes, {address_length} needed"
        )
    tlvs = _v2_tlvs(body[address_length:])
    family = {0x1: "TCP4", 0x2: "TCP6", 0x3: "UNIX"}.get(family_code, "UNKNOWN")
    if command == 0:
        return ProxyHeader(2, "LOCAL", family, None, None, length, tlvs)
    if family_code in (0x1, 0x2) and transport == 0x1:
        size = 4 if family_code == 0x1 else 16
        source = (_v2_address(body[:size]), int.from_bytes(body[2 * size : 2 * size + 2], "big"))
        destination = (
            _v2_address(body[size : 2 * size]),
            int.from_bytes(body[2 * size + 2 : 2 * size + 4], "big"),
        )
        return ProxyHeader(2, "PROXY", family, source, destination, length, tlvs)
    return ProxyHeader(
        2, "PROXY", family if transport == 0x1 else "UNKNOWN", None, None, length, tlvs
    )


def _v2_address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyProtocolError("PROXY v2 TLV cut short")
        kind = data[offset]
        size = int.from_bytes(data[offset + 1 : offset + 3], "big")
        if offset + 3 + size > len(data):
            raise ProxyProtocolError(f"PROXY v2 TLV 0x{kind:02X} runs past the header")
        tlvs.append((kind, data[offset + 3 : offset + 3 + size]))
        offset += 3 + size
    return tuple(tlvs)


class ProxyHeaderReader:
    """Collects one header from bytes fed in any chunking.

    Parameters
    ----------
    max_v2_length : int
        The longest version 2 header accepted, fixed part included.
    """

    def __init__(self, *, max_v2_length: int = MAX_V2_LENGTH) -> None:
        self.max_v2_length = max_v2_length
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None

    def bytes_wanted(self) -> int:
        """Bytes the caller may read next without reading past the header (0 when done).

        A version 2 header says its length after 16 bytes; a version 1 line
        is at least 15 bytes, then read a byte at a time up to its LF.
        """
        if self.header is not None:
            return 0
        have = len(self._buffer)
        if have == 0:
            return 1
        if self._buffer[0] == V2_SIGNATURE[0]:
            if have < _V2_FIXED:
                return _V2_FIXED - have
            return max(_V2_FIXED + int.from_bytes(self._buffer[14:16], "big") - have, 1)
        return _V1_SHORTEST - have if have < _V1_SHORTEST else 1

    def feed(self, data: bytes | bytearray | memoryview) -> ProxyHeader | None:
        """Add bytes; the header once it is complete, else None.

        Bytes past the header are not kept: feed at most :meth:`bytes_wanted`
        at a time, or find the rest at ``header.length`` in what was fed.

        Raises
        ------
        ProxyProtocolError
            The bytes so far cannot begin a valid header.
        """
        if self.header is not None:
            return self.header
        self._buffer += data
        self.header = parse_proxy_header(self._buffer, max_v2_length=self.max_v2_length)
        return self.header
