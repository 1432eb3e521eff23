"""DICOM Part 10 files without pydicom: file meta in, file meta out.

The storage SCP writes a received dataset as a Part 10 file with only what the
command set and the presentation context tell (PS3.10 7.1): the 128-byte
preamble, ``DICM``, and a File Meta Information group in explicit VR little
endian. The C-STORE SCU reads a file's meta group the same way to learn its
SOP class, instance and transfer syntax, then sends the dataset bytes that
follow it as they are.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from dicomnet.core.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = [
    "FileMeta",
    "Part10Error",
    "Readable",
    "encode_file_meta",
    "parse_file_meta",
    "read_file_meta",
]

PREAMBLE = bytes(128) + b"DICM"

_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_HEADER = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<2xL")
_MAX_META_LENGTH = 1 << 16


class Part10Error(ValueError):
    """A file that is not a readable DICOM Part 10 file."""


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What the File Meta Information says about a Part 10 file.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid, transfer_syntax : str
        (0002,0002), (0002,0003), (0002,0010).
    dataset_offset : int
        Where the dataset starts in the file.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int


def _element(tag_element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xL", 0x0002, tag_element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, tag_element, vr, len(value)) + value


@functools.lru_cache(maxsize=64)
def _fixed_meta(
    sop_class_uid: str, transfer_syntax: str, source_ae_title: str
) -> tuple[bytes, bytes]:
    """The File Meta elements before and after (0002,0003), which vary per instance."""
    before = _element(0x0001, b"OB", b"\x00\x01") + _element(
        0x0002, b"UI", sop_class_uid.encode("ascii")
    )
    after = b"".join(
        (
            _element(0x0010, b"UI", transfer_syntax.encode("ascii")),
            _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
            _element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
            _element(0x0016, b"AE", source_ae_title.encode("latin-1"))
            if source_ae_title.strip()
            else b"",
        )
    )
    return before, after


def encode_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    *,
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 Table 7.1-1)."""
    before, after = _fixed_meta(sop_class_uid, transfer_syntax, source_ae_title)
    instance = _element(0x0003, b"UI", sop_instance_uid.encode("ascii"))
    length = len(before) + len(instance) + len(after)
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, length)
    return b"".join((PREAMBLE, group_length, before, instance, after))


FIRST_READ = 4096
"""Bytes read at once: the preamble and a File Meta group fit in it nearly always."""


def read_file_meta(stream: BinaryIO) -> FileMeta:
    """Read the preamble and File Meta group; the stream is left at the dataset."""
    meta = parse_file_meta(stream.read(FIRST_READ), stream)
    stream.seek(meta.dataset_offset)
    return meta


class Readable(Protocol):
    """What :func:`parse_file_meta` reads the rest of a long meta group from."""

    def read(self, size: int, /) -> bytes: ...


def parse_file_meta(head: bytes, stream: Readable | None = None) -> FileMeta:
    """The File Meta group at the start of ``head`` (the first bytes of a file).

    When the group runs past ``head``, the rest is read from ``stream``, which
    must then be positioned right after ``head``; without a stream that is a
    :class:`Part10Error`. The stream's position afterwards is unspecified.
    A sender reads every file's meta group before it sends (to know what to
    propose), so this walks the few elements with no copy of ``head``.
    """
    if len(head) < 132 or head[128:132] != b"DICM":
        raise Part10Error("no DICM prefix at offset 128: not a Part 10 file")
    buffer: bytes | bytearray = head
    unpack_header = _HEADER.unpack_from
    values: dict[int, bytes] = {}
    offset = 132
    end: int | None = None
    while end is None or offset < end:
        if offset + 12 > len(buffer):
            buffer = _more(buffer, offset + 8, stream)
        group, element, vr = unpack_header(buffer, offset)
        if group != 0x0002:
            if end is None:
                raise Part10Error("file meta information has no group length")
            break
        if vr in _LONG_VRS:
            if offset + 12 > len(buffer):
                buffer = _more(buffer, offset + 12, stream)
            (length,) = _LONG_LENGTH.unpack_from(buffer, offset + 6)
            offset += 12
        else:
            (length,) = _SHORT_LENGTH.unpack_from(buffer, offset + 6)
            offset += 8
        if length > _MAX_META_LENGTH:
            raise Part10Error(f"file meta element (0002,{element:04X}) is {length} bytes long")
        if offset + length > len(buffer):
            buffer = _more(buffer, offset + length, stream)
        value = bytes(buffer[offset : offset + length])
        offset += length
        values[element] = value
        if element == 0x0000:
            if length != 4:
                raise Part10Error("file meta group length is not 4 bytes")
            end = offset + int.from_bytes(value, "little")

    def text(element: int) -> str:
        raw = values.get(element)
        if raw is None:
            raise Part10Error(f"file meta information lacks (0002,{element:04X})")
        return raw.rstrip(b"\x00 ").decode("ascii", "replace")

    return FileMeta(text(0x0002), text(0x0003), text(0x0010), offset)


def _more(buffer: bytes | bytearray, end: int, stream: Readable | None) -> bytearray:
    """``buffer`` with at least ``end`` bytes, read on from ``stream``; else truncated."""
    grown = bytearray(buffer)
    while stream is not None and len(grown) < end:
        chunk = stream.read(max(end - len(grown), FIRST_READ))
        if not chunk:
            break
        grown += chunk
    if end > len(grown):
        raise Part10Error("file meta information is truncated")
    return grown
