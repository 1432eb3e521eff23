"""Read a few top-level attributes from dataset bytes, without pydicom.

The archive indexes every instance it stores; parsing each header with
pydicom costs about 300 us, a third of what receiving a 130 KB instance
costs. The index needs only a handful of short text attributes near the
start of the dataset, so :func:`read_attributes` walks the elements of an
implicit or explicit VR little endian dataset, skipping values (sequences of
undefined length included) until it passes the last tag it wants.

It gives up (returns None) rather than guess: big endian or deflated data,
a Specific Character Set with code extensions (ISO 2022) or outside the
single-byte ISO 8859 family and UTF-8, truncated bytes. The caller then uses pydicom.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

__all__ = ["LITTLE_ENDIAN_SYNTAXES", "is_complete", "read_attributes", "read_file_attributes"]

LITTLE_ENDIAN_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    }
)
"""Transfer syntaxes whose dataset is implicit (the first) or explicit VR little
endian outside encapsulated pixel data: the ones this module reads."""

HEADER_WINDOW = 64 << 10

DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
INFLATE_WINDOW = 16 << 20
"""Bytes of a deflated dataset inflated to find its attributes, and no more: a
small compressed stream can inflate to terabytes (a deflate bomb)."""
"""Bytes read from the start of a stored dataset to find the wanted attributes."""

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_TEXT_CHARSETS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
}
"""Single-byte (and UTF-8) character sets without code extensions: decoded here.
Any other set (ISO 2022 escapes, GB18030, several terms) goes to pydicom."""

_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _Unreadable(Exception):
    """The bytes end early or are not what the transfer syntax says."""


def _header(data: bytes | memoryview, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """``(tag, vr, value length, header length)`` of the element at ``pos``."""
    if pos + 8 > len(data):
        raise _Unreadable
    group, element = _TAG.unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:
        return tag, b"", _U32.unpack_from(data, pos + 4)[0], 8
    vr = bytes(data[pos + 4 : pos + 6])
    if vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise _Unreadable
        return tag, vr, _U32.unpack_from(data, pos + 8)[0], 12
    return tag, vr, _U16.unpack_from(data, pos + 6)[0], 8


def _skip_undefined(data: bytes | memoryview, pos: int, implicit: bool) -> int:
    """The position after the items of a sequence of undefined length starting at ``pos``."""
    while True:
        tag, _, length, size = _header(data, pos, True)
        pos += size
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Unreadable
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements, then the item end
            tag, vr, length, size = _header(data, pos, implicit)
            pos += size
            if tag == _ITEM_END:
                break
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
            else:
                pos += length


def read_attributes(
    data: bytes | memoryview, implicit: bool, wanted: dict[int, str], *, complete: bool = True
) -> dict[str, str] | None:
    """``keyword: value`` for the ``wanted`` tags (tag: keyword) present at the top level.

    Values are decoded text with padding removed; absent tags are left out.
    ``complete`` says whether ``data`` is the whole dataset or only its start;
    None when the bytes cannot be read this way, or end before the last
    wanted tag could have been passed.
    """
    last = max(wanted)
    found: dict[str, str] = {}
    encoding = "latin-1"
    pos = 0
    try:
        while pos < len(data):
            tag, vr, length, size = _header(data, pos, implicit)
            if tag > last:
                break
            pos += size
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
                continue
            if pos + length > len(data):
                raise _Unreadable
            if tag == _CHARSET:
                terms = bytes(data[pos : pos + length]).decode("ascii").strip(" \x00").split("\\")
                if len(terms) > 1 or terms[0] not in _TEXT_CHARSETS:
                    return None
                encoding = _TEXT_CHARSETS[terms[0]]
                if tag in wanted:
                    found[wanted[tag]] = terms[0]
            elif tag in wanted:
                value = bytes(data[pos : pos + length]).decode(encoding)
                found[wanted[tag]] = value.strip(" \x00")
            pos += length
        else:
            if not complete:
                return None  # the window ended before the wanted tags did
    except (_Unreadable, UnicodeDecodeError, struct.error):
        return None
    return found


def is_complete(data: bytes | memoryview, implicit: bool) -> bool:
    """Whether little endian dataset bytes hold whole elements and end where the last does.

    Walks every top-level element header (sequences and encapsulated pixel
    data item by item) without reading values, so a mapped 2 GB file costs
    only its headers. A truncated or padded file fails.
    """
    pos = 0
    end = len(data)
    try:
        while pos < end:
            _, vr, length, size = _header(data, pos, implicit)
            pos += size
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
            else:
                pos += length
    except (_Unreadable, struct.error):
        return False
    return pos == end


def read_file_attributes(path: str | os.PathLike[str], wanted: dict[int, str]) -> dict[str, str]:
    """``keyword: value`` for the ``wanted`` tags of a Part 10 file, pixel data unread.

    The fast reader above serves little endian datasets from the first 64 KB;
    anything it declines (big endian, deflated, other character sets, a long
    header) is read with pydicom. Absent attributes are left out.
    """
    from dicomnet.dataset.part10 import read_file_meta

    with open(path, "rb") as stream:
        meta = read_file_meta(stream)
        if meta.transfer_syntax == DEFLATED_SYNTAX:
            return _read_deflated_attributes(stream, wanted)
        if meta.transfer_syntax in LITTLE_ENDIAN_SYNTAXES:
            window = stream.read(HEADER_WINDOW)
            implicit = meta.transfer_syntax == "1.2.840.10008.1.2"
            found = read_attributes(window, implicit, wanted, complete=len(window) < HEADER_WINDOW)
            if found is not None:
                return found
    from pydicom import dcmread

    keywords = list(wanted.values())
    ds = dcmread(path, stop_before_pixels=True, specific_tags=keywords)
    return {kw: _text(ds[kw].value) for kw in keywords if kw in ds and ds[kw].value is not None}


def _text(value: Any) -> str:
    """A pydicom value as its encoded text: several values joined by backslashes."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _read_deflated_attributes(stream: Any, wanted: dict[int, str]) -> dict[str, str]:
    """The wanted attributes from the first :data:`INFLATE_WINDOW` inflated bytes.

    Never inflates the whole dataset (pydicom would); attributes past the
    window make the dataset unreadable here, which the caller reports.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    window = bytearray()
    while len(window) < INFLATE_WINDOW and not inflater.eof:
        chunk = stream.read(1 << 16)
        if not chunk:
            break
        window += inflater.decompress(chunk, INFLATE_WINDOW - len(window))
        while inflater.unconsumed_tail and len(window) < INFLATE_WINDOW:
            window += inflater.decompress(inflater.unconsumed_tail, INFLATE_WINDOW - len(window))
    found = read_attributes(memoryview(window), False, wanted, complete=inflater.eof)
    if found is None:
        raise ValueError(f"deflated dataset: attributes not found in its first {len(window)} bytes")
    return found
