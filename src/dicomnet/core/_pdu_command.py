"""DIMSE command sets, implicit VR little endian (PS3.7 6.3.1, Annex E), pure Python.

Part of the pure codec (:mod:`dicomnet.core._pdu_py` re-exports it); also
holds the small helpers the other two parts share: the flat byte view, the
range check and latin-1 text encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from dicomnet.core._command_tags import COMMAND_TAGS
from dicomnet.errors import CommandSetError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["decode_command", "encode_command"]

_ELEMENT_HEADER: Final = struct.Struct("<HHL")
"""Group, element, value length of an implicit VR little endian element (PS3.5 7.1.3)."""
_US: Final = struct.Struct("<H")
_UL: Final = struct.Struct("<L")
_AT: Final = struct.Struct("<HH")

_COMMAND_FIELD: Final = 0x00000100


def _byte_view(data: ReadableBuffer) -> memoryview:
    """A flat unsigned-byte view of any buffer, without copying it."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _check_range(value: int, maximum: int, what: str) -> int:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0-{maximum}")
    return value


def _encode_text(value: str, what: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not latin-1 text") from None


# -- DIMSE command sets ------------------------------------------------------------


def _encode_us(value: object, tag: int) -> bytes:
    return _US.pack(_check_range(_as_int(value, tag), 0xFFFF, f"US value of {tag:08X}"))


def _encode_ul(value: object, tag: int) -> bytes:
    return _UL.pack(_check_range(_as_int(value, tag), 0xFFFFFFFF, f"UL value of {tag:08X}"))


def _encode_at(value: object, tag: int) -> bytes:
    tags = (value,) if isinstance(value, int) else value
    if not isinstance(tags, Sequence):
        raise ValueError(f"AT value of (0000,{tag:04X}) must be a tuple of tags")
    parts = []
    for item in tags:
        at = _check_range(_as_int(item, tag), 0xFFFFFFFF, f"AT value of {tag:08X}")
        parts.append(_AT.pack(at >> 16, at & 0xFFFF))
    return b"".join(parts)


def _encode_ui(value: object, tag: int) -> bytes:
    raw = _encode_text(_as_str(value, tag), f"UI value of {tag:08X}")
    return raw + b"\0" if len(raw) & 1 else raw


def _encode_string(value: object, tag: int) -> bytes:
    raw = _encode_text(_as_str(value, tag), f"text value of {tag:08X}")
    return raw + b" " if len(raw) & 1 else raw


def _as_int(value: object, tag: int) -> int:
    if not isinstance(value, int):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs an int, not {value!r}")
    return value


def _as_str(value: object, tag: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs a str, not {value!r}")
    return value


def _decode_us(value: memoryview, tag: int) -> int:
    if len(value) != 2:
        raise CommandSetError(f"US element (0000,{tag:04X}) of length {len(value)}, not 2")
    return int(_US.unpack_from(value)[0])


def _decode_ul(value: memoryview, tag: int) -> int:
    if len(value) != 4:
        raise CommandSetError(f"UL element (0000,{tag:04X}) of length {len(value)}, not 4")
    return int(_UL.unpack_from(value)[0])


def _decode_at(value: memoryview, tag: int) -> tuple[int, ...]:
    if len(value) % 4:
        raise CommandSetError(
            f"AT element (0000,{tag:04X}) of length {len(value)}, not a multiple of 4"
        )
    return tuple((group << 16) | element for group, element in _AT.iter_unpack(value))


def _decode_ui(value: memoryview, tag: int) -> str:
    return str(value, "latin-1").rstrip("\0 ")


def _decode_string(value: memoryview, tag: int) -> str:
    return str(value, "latin-1").rstrip(" ")


_VALUE_CODECS: Final[
    Mapping[str, tuple[Callable[[object, int], bytes], Callable[[memoryview, int], object]]]
] = {
    # VR: (encoder, decoder), PS3.5 Table 6.2-1 and 7.1.3
    "US": (_encode_us, _decode_us),
    "UL": (_encode_ul, _decode_ul),
    "AT": (_encode_at, _decode_at),
    "UI": (_encode_ui, _decode_ui),
    "AE": (_encode_string, _decode_string),
    "CS": (_encode_string, _decode_string),
    "IS": (_encode_string, _decode_string),
    "LO": (_encode_string, _decode_string),
    "LT": (_encode_string, _decode_string),
    "SH": (_encode_string, _decode_string),
}


def encode_command(fields: Mapping[int, object]) -> bytes:
    """Encode a DIMSE command set, implicit VR little endian (PS3.7 6.3.1, Annex E).

    Parameters
    ----------
    fields : mapping of int to value
        Tag (``0x00000100``) to value: ``int`` for US and UL, ``str`` for UI
        (padded with NUL to even length) and for AE, CS, IS, LO, LT, SH (padded
        with space), a tuple of 32-bit tags for AT, ``bytes`` written as is
        (padded with NUL to even). A value given for CommandGroupLength
        (0000,0000) is ignored: it is computed.

    Returns
    -------
    bytes
        CommandGroupLength first, then the elements sorted by tag.

    Raises
    ------
    ValueError
        A tag outside group 0000, a tag outside :data:`COMMAND_TAGS` with a
        non-bytes value, a value of the wrong type for its VR, or an integer
        out of range.
    """
    parts: list[bytes] = []
    for tag in sorted(fields):
        if not 0 <= tag <= 0xFFFF:
            raise ValueError(f"tag {tag:08X} is not a command element of group 0000")
        if tag == 0:
            continue
        value = fields[tag]
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) & 1:
                raw += b"\0"
        else:
            entry = COMMAND_TAGS.get(tag)
            if entry is None:
                raise ValueError(f"(0000,{tag:04X}) is not a known command element: give bytes")
            raw = _VALUE_CODECS[entry[0]][0](value, tag)
        parts.append(_ELEMENT_HEADER.pack(0, tag, len(raw)))
        parts.append(raw)
    elements = b"".join(parts)
    return _ELEMENT_HEADER.pack(0, 0, 4) + _UL.pack(len(elements)) + elements


def decode_command(data: ReadableBuffer) -> dict[int, object]:
    """Decode a DIMSE command set, implicit VR little endian (PS3.7 6.3.1, Annex E).

    Parameters
    ----------
    data : bytes-like
        The whole command set.

    Returns
    -------
    dict of int to value
        Tag to value, without CommandGroupLength: ``int`` for US and UL,
        ``str`` for UI (trailing NULs and spaces dropped) and the text VRs
        (trailing spaces dropped), a tuple of 32-bit tags for AT, ``bytes`` for
        unknown group 0000 elements.

    Raises
    ------
    CommandSetError
        A truncated element, a tag outside group 0000, a duplicate or unsorted
        tag, a CommandGroupLength that does not match, a US value whose length
        is not 2, a UL value whose length is not 4, an AT value whose length is
        not a multiple of 4, a value length past the end, or no CommandField
        (0000,0100).
    """
    view = _byte_view(data)
    size = len(view)
    command: dict[int, object] = {}
    offset = 0
    previous = -1
    while offset < size:
        if size - offset < 8:
            raise CommandSetError(f"command set ends inside an element header at byte {offset}")
        group, tag, length = _ELEMENT_HEADER.unpack_from(view, offset)
        offset += 8
        if group:
            raise CommandSetError(
                f"element ({group:04X},{tag:04X}) outside group 0000 in a command set"
            )
        if tag <= previous:
            order = "duplicate" if tag == previous else "out of order"
            raise CommandSetError(f"command element (0000,{tag:04X}) {order}")
        previous = tag
        if length > size - offset:
            raise CommandSetError(
                f"command element (0000,{tag:04X}) of length {length} overruns the "
                f"command set ({size - offset} bytes remain)"
            )
        value = view[offset : offset + length]
        offset += length
        if tag == 0:
            group_length = _decode_ul(value, 0)
            if group_length != size - offset:
                raise CommandSetError(
                    f"CommandGroupLength {group_length} but {size - offset} bytes follow it"
                )
            continue
        entry = COMMAND_TAGS.get(tag)
        if entry is None:
            command[tag] = bytes(value)
        else:
            command[tag] = _VALUE_CODECS[entry[0]][1](value, tag)
    if _COMMAND_FIELD not in command:
        raise CommandSetError("command set without CommandField (0000,0100)")
    return command
