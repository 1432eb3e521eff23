"""The strict element walk of a received dataset: the pure-Python implementation.

A storage SCP must know that a peer's dataset parses in the negotiated
transfer syntax before it answers Success, and it needs a few attributes
(UIDs for the file's name, the index's keys) from the dataset's start. This
walk does both in one pass over the encoded bytes, with no dataset object:
it goes element by element, as far as the last wanted tag, and stops at the
first thing that breaks PS3.5 section 7 (:class:`ElementError`), or when the
bytes end inside an element (:class:`ElementsCut`: a caller holding only the
dataset's first bytes then reads further).

The compiled codec has the same :func:`walk_elements` (``src/_pdu.pyx``), with
the same results and the same messages; :mod:`dicomnet.core.codec` picks one.
:mod:`dicomnet.dataset.attributes` turns the results into decoded values.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["LITTLE", "ElementError", "ElementsCut", "read_header", "walk_elements"]


class ElementError(ValueError):
    """The bytes break PS3.5 section 7 where the message says."""


class ElementsCut(Exception):
    """The bytes end inside an element: the verdict needs more of them."""


LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
"""VRs with two reserved bytes and a 32-bit length in explicit VR (PS3.5 7.1.2)."""
VRS = LONG_VRS | {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
    b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
"""Every VR of PS3.5 6.2: an explicit VR element with any other is not DICOM."""
UNDEFINED_LENGTH_VRS = frozenset({b"", b"SQ", b"UN", b"OB", b"OW"})
"""Who may have an undefined length: sequences, UN holding one, encapsulated pixel
data (PS3.5 7.1.2, 7.5); ``b""`` is an implicit VR element, whose VR is not sent."""
FIRST_DATASET_GROUP = 0x0008
"""PS3.5 7.1: groups 0000-0007 are not part of a dataset (0002 is the File Meta)."""
CHARSET = 0x00080005
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

_Order = tuple[struct.Struct, struct.Struct, struct.Struct]
LITTLE: _Order = (struct.Struct("<HH"), struct.Struct("<H"), struct.Struct("<I"))
"""How :func:`read_header` unpacks little endian data (the default)."""
_BE: _Order = (struct.Struct(">HH"), struct.Struct(">H"), struct.Struct(">I"))
_SEQUENCE, _ITEM_BODY = 0, 1


def tag_name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def read_header(
    data: Any, pos: int, implicit: bool, order: _Order = LITTLE
) -> tuple[int, bytes, int, int]:
    """``(tag, vr, value length, header length)``; the VR checked against PS3.5 6.2."""
    if pos + 8 > len(data):
        raise ElementsCut("the dataset ends inside an element header")
    tag_struct, u16, u32 = order
    group, element = tag_struct.unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:
        return tag, b"", u32.unpack_from(data, pos + 4)[0], 8
    vr = bytes(data[pos + 4 : pos + 6])
    if vr not in VRS:
        raise ElementError(f"{tag_name(tag)}: bytes {vr.hex()} where its VR belongs")
    if vr in LONG_VRS:
        if pos + 12 > len(data):
            raise ElementsCut(f"the dataset ends inside the header of {tag_name(tag)}")
        return tag, vr, u32.unpack_from(data, pos + 8)[0], 12
    return tag, vr, u16.unpack_from(data, pos + 6)[0], 8


def _past_items(data: Any, pos: int, implicit: bool, order: _Order) -> int:
    """The position after a sequence of undefined length whose first item starts at ``pos``.

    A loop over a stack of open sequences and items, not recursion: a peer
    may nest thousands of levels.
    """
    frames: list[tuple[int, bool, _Order]] = [(_SEQUENCE, implicit, order)]
    while frames:
        kind, implicit, order = frames[-1]
        if kind == _SEQUENCE:
            tag, _, length, size = read_header(data, pos, True, order)
            pos += size
            if tag == SEQUENCE_END:
                frames.pop()
                continue
            if tag != ITEM:
                raise ElementError(f"{tag_name(tag)} inside a sequence, where an item belongs")
            if length == UNDEFINED:
                frames.append((_ITEM_BODY, implicit, order))
                continue
        else:
            tag, vr, length, size = read_header(data, pos, implicit, order)
            pos += size
            if tag == ITEM_END:
                frames.pop()
                continue
            if length == UNDEFINED:
                if vr not in UNDEFINED_LENGTH_VRS:
                    raise ElementError(f"{tag_name(tag)}: undefined length on a {vr.decode()}")
                # PS3.5 6.2.2: a UN sequence holds implicit VR little endian items
                un = vr == b"UN"
                frames.append((_SEQUENCE, implicit or un, LITTLE if un else order))
                continue
        if pos + length > len(data):
            raise ElementsCut(f"{tag_name(tag)}: a value of {length} bytes runs past the end")
        pos += length
    return pos


def walk_elements(
    data: Any, start: int, implicit: bool, little: bool, wanted: Mapping[int, Any]
) -> tuple[bytes | None, dict[int, tuple[bytes, bytes]], bool]:
    """``(Specific Character Set value, {tag: (vr, value)}, passed)`` for the ``wanted`` tags.

    ``data`` (bytes, a memoryview, an mmap) holds the dataset from ``start``.
    ``passed`` says the walk went past the last wanted tag; False, the bytes
    ended first, between two elements. Raises :class:`ElementError` for what
    breaks PS3.5 7.1 (an element of groups 0000-0007, tags out of ascending
    order or repeated, a VR not of PS3.5 6.2, an undefined length on a VR
    that cannot have one, anything but items in a sequence), and
    :class:`ElementsCut` when ``data`` ends inside an element.
    """
    order = LITTLE if little else _BE
    last = max(wanted)
    charset: bytes | None = None
    found: dict[int, tuple[bytes, bytes]] = {}
    previous = -1
    pos = start
    end = len(data)
    while pos < end:
        tag, vr, length, size = read_header(data, pos, implicit, order)
        if tag >> 16 < FIRST_DATASET_GROUP:
            where = "the File Meta group" if tag >> 16 == 2 else f"group {tag >> 16:04X}"
            raise ElementError(
                f"{tag_name(tag)} of {where} inside the dataset (PS3.5 7.1: groups below 0008)"
            )
        if tag <= previous:
            raise ElementError(
                f"{tag_name(tag)} after {tag_name(previous)}: not in ascending order"
            )
        if tag > last:
            return charset, found, True
        previous = tag
        pos += size
        if length == UNDEFINED:
            if vr not in UNDEFINED_LENGTH_VRS:
                raise ElementError(f"{tag_name(tag)}: undefined length on a {vr.decode()}")
            un = vr == b"UN"
            pos = _past_items(data, pos, implicit or un, LITTLE if un else order)
            continue
        if pos + length > end:
            raise ElementsCut(f"{tag_name(tag)}: a value of {length} bytes runs past the end")
        if tag == CHARSET:
            charset = bytes(data[pos : pos + length])
        if tag in wanted:
            found[tag] = (vr, bytes(data[pos : pos + length]))
        pos += length
    return charset, found, False
